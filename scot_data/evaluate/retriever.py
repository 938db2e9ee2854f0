"""Top-k search over an image gallery of unit vectors: exact, chunked, FAISS when installed.

The gallery stays float16 in memory (half the RAM of float32); each chunk of it is cast
to float32, scored against every query and merged into a running top-k, so memory is
``queries x (chunk + k)`` whatever the gallery size. With ``faiss`` installed (``pip
install faiss-cpu``) an exact ``IndexFlatIP`` does the same job with its own BLAS
kernels; both are exact, so both return the same neighbours (ties aside).

A hit with no gallery item behind it (FAISS pads with row -1 when it has fewer than k
results, e.g. for a NaN query) or a NaN score is no hit: its row is -1, its score -inf,
it is moved after the real hits and left out of ``ids``, which only ever holds real
gallery ids (``ids[q][i]`` still has score ``scores[q, i]``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scot_data.embed.layout import IMAGES_DIR
from scot_data.embed.view import load_embeddings


@dataclass
class SearchResult:
    """Per query: gallery ids and scores (cosine similarity), best first."""

    ids: list[list[str]]  # real hits only: a query may have fewer than k
    scores: np.ndarray  # (queries, k) float32, -inf where there is no hit
    rows: np.ndarray  # (queries, k) gallery row indices, -1 where there is no hit


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


class Retriever:
    """Exact inner-product search over ``matrix`` (N, dim) unit vectors named by ``ids``."""

    def __init__(
        self, ids: list[str], matrix: np.ndarray, use_faiss: bool | None = None, chunk: int = 65_536
    ):
        if len(ids) != len(matrix):
            raise ValueError(f"{len(ids)} ids for {len(matrix)} vectors")
        self.ids = list(ids)
        self.matrix = matrix
        self.chunk = chunk
        self.use_faiss = faiss_available() if use_faiss is None else use_faiss
        self._faiss_index = None

    @classmethod
    def from_embeddings(cls, embeddings_dir: str | Path, use_faiss: bool | None = None) -> Retriever:
        """The images of a finished embedding-cache directory (a demo run's, a benchmark's)."""
        images = load_embeddings(embeddings_dir, IMAGES_DIR)
        return cls(images.ids.to_pylist(), images.matrix, use_faiss=use_faiss)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray | torch.Tensor, k: int = 10) -> SearchResult:
        """The ``k`` best gallery items of each query row (unit vectors, same dim)."""
        query = torch.as_tensor(np.asarray(queries, dtype=np.float32))
        if query.ndim == 1:
            query = query[None, :]
        k = min(k, len(self.ids))
        scores, rows = self._faiss(query, k) if self.use_faiss else self._exact(query, k)
        scores, rows = _drop_missing(np.asarray(scores), np.asarray(rows))
        return SearchResult([[self.ids[r] for r in row if r >= 0] for row in rows.tolist()], scores, rows)

    def _exact(self, query: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        best_scores = torch.full((len(query), 0), -torch.inf)
        best_rows = torch.zeros((len(query), 0), dtype=torch.long)
        for start in range(0, len(self.ids), self.chunk):
            block = torch.from_numpy(np.asarray(self.matrix[start : start + self.chunk], dtype=np.float32))
            scores = torch.cat([best_scores, query @ block.T], dim=1)
            rows = torch.cat(
                [best_rows, torch.arange(start, start + len(block)).expand(len(query), -1)], dim=1
            )
            best_scores, picked = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            best_rows = torch.gather(rows, 1, picked)
        return best_scores.numpy(), best_rows.numpy()

    def _faiss(self, query: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self._faiss_index is None:
            index = faiss.IndexFlatIP(self.matrix.shape[1])
            for start in range(0, len(self.ids), self.chunk):
                index.add(np.ascontiguousarray(self.matrix[start : start + self.chunk], dtype=np.float32))
            self._faiss_index = index
        scores, rows = self._faiss_index.search(np.ascontiguousarray(query.numpy()), k)
        return scores, rows


def _drop_missing(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padding (row -1) and NaN scores become (-inf, -1), moved after the real hits in
    order, so a padding row can never index ``ids[-1]`` and ids stay aligned with scores."""
    missing = (rows < 0) | np.isnan(scores)
    order = np.argsort(missing, axis=1, kind="stable")
    missing = np.take_along_axis(missing, order, axis=1)
    scores = np.where(missing, -np.inf, np.take_along_axis(scores, order, axis=1)).astype(np.float32)
    return scores, np.where(missing, -1, np.take_along_axis(rows, order, axis=1))
