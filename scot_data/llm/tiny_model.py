"""A tiny random-weight Llama for testing the LLM plumbing offline in seconds.

End-to-end tests need a model that vLLM really loads and serves, with a real tokenizer
and chat template so chat completions and JSON-schema guided decoding behave as with
SmolLM2, but small enough that the server starts fast on 2 CPU cores. The answers are
noise; guided decoding still forces them into the schema, which is what the tests check.
``head_dim`` is 64 because vLLM's CPU attention rejected 16.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scot_data.atomic import build_once

TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 128,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "max_position_embeddings": 4096,
}
SERVED_NAME = "scot-tiny-llama"


def _load_tokenizer(source: Path | None) -> Any:
    """SmolLM2's tokenizer and chat template: from an HF directory, else from its GGUF."""
    from transformers import AutoTokenizer

    from scot_data.llm.convert import find_smollm2_gguf

    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    gguf = find_smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _build(out: Path, seed: int, tokenizer_source: Path | None) -> dict[str, Any]:
    """Write config, random weights (bf16, as SmolLM2 is served) and tokenizer to ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _load_tokenizer(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True, **TINY_SHAPE,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).bfloat16()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"kind": "tiny-random-llama", "seed": seed, "served_model_name": SERVED_NAME,
            "parameters": sum(p.numel() for p in model.parameters()), **TINY_SHAPE}


def build_tiny_model(out_dir: str | os.PathLike[str], seed: int = 0,
                     tokenizer_source: str | os.PathLike[str] | None = None) -> Path:
    """Build the tiny model at ``out_dir`` once (a few seconds); same seed, same weights."""
    source = Path(tokenizer_source) if tokenizer_source else None
    return build_once(out_dir, lambda tmp: _build(tmp, seed, source))
