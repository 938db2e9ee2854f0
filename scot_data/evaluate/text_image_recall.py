"""Text->image Recall@K of paired embeddings: each text ranks every image, and Recall@K is
the share whose own image is in the top K. The one such recall of the project: the fit-lit
model card and ``scot encoder recall`` both use it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

RECALL_KS = (1, 5, 10)


def recall_at_k(
    text_embeddings: torch.Tensor,
    image_embeddings: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Text->image Recall@K: the share of texts whose own image ranks in the top K.

    The rank counts images scoring strictly higher than the target, so ties favour it.
    """
    scores = text_embeddings @ image_embeddings.T
    own = scores.gather(1, targets[:, None])
    ranks = (scores > own).sum(dim=1)
    return {f"R@{k}": round(float((ranks < k).float().mean()), 4) for k in ks}


def chance_recall(n_images: int, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Recall@K of a random ranking over ``n_images``: ``K / N``."""
    return {f"R@{k}": round(min(k, n_images) / n_images, 4) for k in ks}
