"""Prefect flows: thin wrappers that add retries, caching and scheduling to scot_data stages.

Which flow runs where:

- ``pipeline.pipeline_flow`` (one ``stage_flow`` subflow per stage) is what ``scot run``
  runs with its default ``--engine prefect``, and the very flow the on-demand
  ``scot-pipeline`` deployment serves (``serve.py``). Each subflow calls the library's stage
  runner, the same one ``--engine local`` calls.
- ``triplets.triplets_flow`` / ``triplets_watch_flow``, ``embed.embed_flow`` /
  ``embed_watch_flow`` and ``captions.captions_flow`` are for the watch deployments and
  ``python -m flows.<name>`` only: they spread one stage over Prefect tasks (LLM batches at
  concurrency, image shards on Dask workers). ``scot run`` does that work in-process through
  the library runner, with the same output layout, folder lock and resume rules, so a folder
  one of them started can be finished by the other.
"""
