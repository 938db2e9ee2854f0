"""Exact top-k search: the Retriever (chunked torch, and FAISS when installed) against one
float32 matrix product + topk over the whole gallery, measured in the same run.

The baseline is the fastest exact search when memory is no concern (it materialises the
whole queries x gallery score matrix); the Retriever keeps the gallery float16 and works
chunk by chunk, so the ratio says what bounded memory costs.

Run: .venv/bin/python bench/bench_search.py [--gallery 200000] [--dim 512] [--queries 256] [--k 50]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scot_data.evaluate.retriever import Retriever, faiss_available


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    matrix = rng.normal(size=(rows, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gallery = unit_rows(rng, args.gallery, args.dim)
    queries = unit_rows(rng, args.queries, args.dim)
    full = torch.from_numpy(gallery)

    def baseline() -> None:
        torch.topk(torch.from_numpy(queries) @ full.T, args.k, dim=1)

    results = {"one matmul + topk (float32, baseline)": best_of(args.repeats, baseline)}
    chunked = Retriever([str(i) for i in range(args.gallery)], gallery.astype(np.float16), use_faiss=False)
    results["Retriever, chunked torch (float16 gallery)"] = best_of(
        args.repeats, lambda: chunked.search(queries, args.k)
    )
    if faiss_available():
        with_faiss = Retriever(
            [str(i) for i in range(args.gallery)], gallery.astype(np.float16), use_faiss=True
        )
        with_faiss.search(queries[:1], args.k)  # builds the index once
        results["Retriever, FAISS IndexFlatIP"] = best_of(
            args.repeats, lambda: with_faiss.search(queries, args.k)
        )
    print(f"gallery {args.gallery:,} x {args.dim}-d, {args.queries} queries, top-{args.k}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    base = results["one matmul + topk (float32, baseline)"]
    for name, seconds in results.items():
        print(f"{name:>44}: {args.queries / seconds:10,.0f} queries/s   ratio {base / seconds:.2f}")
        if seconds is not base:
            print("RESULT " + json.dumps({"compared": f"{name.split(' (')[0]} / one matmul + topk",
                                          "ratio": round(base / seconds, 3),
                                          "figure": f"{args.queries / seconds:,.0f} queries/s, gallery {args.gallery:,}"}))


if __name__ == "__main__":
    main()
