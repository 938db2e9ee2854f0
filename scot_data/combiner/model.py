"""The CLIP4Cir-style Combiner: (reference image V, modification text T_m) -> query V_c.

Both features pass their own Linear + ReLU + Dropout projection; the concatenation feeds
(a) a residual MLP that proposes a correction ``v`` and (b) an MLP + sigmoid that gives one
scalar ``lambda`` per query. The output ``normalize(v + lambda * T_m + (1 - lambda) * V)``
starts as a learned mix of the two inputs, so an untrained Combiner is close to the sum
baseline and training only has to learn what the sum gets wrong. Widths scale with the
encoder dim (CLIP4Cir used 4x for the projections and 8x for the hidden layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scot_data.combiner.config import CombinerConfig


@dataclass
class CombinerOutput:
    """The unit-norm query and the mixing weight that produced it (for plots and reports)."""

    query: torch.Tensor
    lam: torch.Tensor


def _projection(dim: int, width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Dropout(dropout))


class Combiner(nn.Module):
    """Maps (V, T_m), each (B, dim), to a unit-norm (B, dim) query and a (B,) lambda."""

    def __init__(self, dim: int, cfg: CombinerConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or CombinerConfig()
        self.dim = dim
        proj, hidden = cfg.projection_factor * dim, cfg.hidden_factor * dim
        self.image_projection = _projection(dim, proj, cfg.dropout)
        self.text_projection = _projection(dim, proj, cfg.dropout)
        self.combiner_layer = _projection(2 * proj, hidden, cfg.dropout)
        self.output_layer = nn.Linear(hidden, dim)
        self.mixing = nn.Sequential(
            _projection(2 * proj, hidden, cfg.dropout), nn.Linear(hidden, 1), nn.Sigmoid()
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> CombinerOutput:
        joint = torch.cat([self.image_projection(image), self.text_projection(text)], dim=-1)
        v = self.output_layer(self.combiner_layer(joint))
        lam = self.mixing(joint)  # (B, 1)
        query = F.normalize(v + lam * text + (1 - lam) * image, dim=-1)
        return CombinerOutput(query=query, lam=lam.squeeze(-1))


QUERY_METHODS = ("image_only", "text_only", "sum", "combiner")


@torch.no_grad()
def compose_queries(
    method: str, image: torch.Tensor, text: torch.Tensor, combiner: Combiner | None = None, chunk: int = 8192
) -> torch.Tensor:
    """Unit-norm queries of one method: the three baselines the papers report, or the Combiner."""
    if method == "image_only":
        return F.normalize(image.float(), dim=-1)
    if method == "text_only":
        return F.normalize(text.float(), dim=-1)
    if method == "sum":
        return F.normalize(image.float() + text.float(), dim=-1)
    if method != "combiner" or combiner is None:
        raise ValueError(f"unknown query method {method!r} (or no Combiner given); known: {QUERY_METHODS}")
    combiner.eval()
    starts = range(0, len(image), chunk)
    parts = [combiner(image[i : i + chunk].float(), text[i : i + chunk].float()).query for i in starts]
    return torch.cat(parts) if parts else torch.zeros_like(image, dtype=torch.float32)
