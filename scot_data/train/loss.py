"""The SCOT loss: InfoNCE of the composed query V_c against the batch's targets T_u.

Row i of the logits scores query i against every target in the batch (the positive is on
the diagonal). The caption hard negative appends one column per row: the similarity of
V_c to that sample's *own* original caption T, so the query is pushed away from "the
reference, unchanged". It is a switch because when targets keep most of the reference it
can push V_c away from what must stay (``shared/DESIGN.md`` section 5, lesson 3).
Optionally every caption in the batch is a negative, and a symmetric term scores each
target against all queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scot_data.train.config import LossConfig


class ScotLoss(nn.Module):
    """``loss(V_c, T_u, T)`` with all three (B, dim) and unit-norm."""

    MAX_LOGIT_SCALE = 100.0  # CLIP's clamp: keeps a learnable temperature from collapsing

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LossConfig()
        log_scale = torch.tensor(math.log(1.0 / self.cfg.temperature))
        if self.cfg.learnable_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.MAX_LOGIT_SCALE)

    def logits(self, query: torch.Tensor, target: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """(B, B [+1 | +B]) query -> target logits; the positive of row i is column i."""
        columns = [query @ target.T]
        if self.cfg.batch_caption_negatives:
            columns.append(query @ caption.T)
        elif self.cfg.caption_hard_negative:
            columns.append((query * caption).sum(-1, keepdim=True))
        return self.scale * torch.cat(columns, dim=1)

    def forward(self, query: torch.Tensor, target: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        labels = torch.arange(len(query), device=query.device)
        loss = F.cross_entropy(self.logits(query, target, caption), labels)
        if self.cfg.symmetric:
            backward = self.scale * (target @ query.T)
            loss = (loss + F.cross_entropy(backward, labels)) / 2
        return loss
