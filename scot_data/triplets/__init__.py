"""The triplet stage: captions -> (modification, modified caption) by an LLM or by templates."""
