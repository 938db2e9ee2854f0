"""The Combiner: the model f_c(V, T_m) -> V_c and its checkpoint files.

``load_combiner(path)`` reads what the train stage (:mod:`scot_data.train`) wrote;
evaluation and search use only this package. The names below load on first use, so
reading ``scot_data.combiner.config`` does not import torch.
"""

from __future__ import annotations

from scot_data.lazy import lazy_names

_HOMES = {
    "load_combiner": "checkpoint",
    "save_combiner": "checkpoint",
    "CombinerConfig": "config",
    "Combiner": "model",
    "CombinerOutput": "model",
    "compose_queries": "model",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
