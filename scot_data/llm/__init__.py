"""The embedded LLM: model directories for vLLM and the vLLM server process itself.

Nothing here imports vLLM: the server runs in its own virtual environment
(``scripts/setup_vllm_env.sh``) and is driven as a subprocess over HTTP.
"""
