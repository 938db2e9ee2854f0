"""Triplet client throughput against a baseline measured in the same run.

1. Client overhead: a server that answers instantly (tests/scripted_openai_server.py).
   Baseline: a bare aiohttp loop posting the same requests at the same concurrency (the
   fastest plain client at hand; plain httpx is 3x slower than scot's client at 64).
   Measured: scot's ChatClient (openai client, retries, rotation) and the whole stage
   (prompting, validation, parts, manifest). Ratios near 1.0 mean scot adds little.
2. With ``--endpoint URL --model NAME`` (e.g. the embedded vLLM server): the stage's
   triplets/s beside the same server saturated by bare requests for the same prompts.
   A ratio near 1.0 means the client leaves the server no idle time.

Run: .venv/bin/python bench/bench_triplets.py [--n 3000] [--concurrency 64]
     .venv/bin/python bench/bench_triplets.py --endpoint http://127.0.0.1:8000/v1 --model smollm2-135m-instruct --n 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from scot_data import ids
from scot_data.atomic import atomic_write_json
from scot_data.triplets.client import ChatClient
from scot_data.triplets.config import DEFAULT_PROMPT, TripletsConfig
from scot_data.triplets.generate import generate_triplets
from scot_data.triplets.prompts import load_prompt

REPO = Path(__file__).resolve().parents[1]
PROMPT = load_prompt(DEFAULT_PROMPT)


def captions(n: int) -> list[str]:
    colours, things = ["red", "blue", "green", "yellow"], ["car", "lamp", "violin", "tree", "house", "cat"]
    return [f"a {colours[i % 4]} {things[i % 6]} number {i}" for i in range(n)]


def request_body(caption: str, model: str, max_tokens: int) -> dict:
    return {"model": model, "messages": PROMPT.messages(caption), "max_tokens": max_tokens, "temperature": 0.7,
            "response_format": PROMPT.response_format("json_schema")}  # fmt: skip


async def bare_aiohttp(url: str, bodies: list[dict], concurrency: int) -> float:
    """Requests/s of a minimal client: the baseline."""
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one(body: dict) -> None:
            async with slots, session.post(f"{url}/chat/completions", json=body) as response:
                response.raise_for_status()
                await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
    return len(bodies) / (time.perf_counter() - started)


async def chat_client(url: str, model: str, texts: list[str], concurrency: int, max_tokens: int) -> float:
    client = ChatClient([url], model, concurrency, timeout=600, max_attempts=3)
    fmt = PROMPT.response_format("json_schema")
    started = time.perf_counter()
    await asyncio.gather(
        *(client.complete(PROMPT.messages(t), response_format=fmt, max_tokens=max_tokens) for t in texts)
    )
    rate = len(texts) / (time.perf_counter() - started)
    await client.close()
    return rate


def stage(url: str, model: str, texts: list[str], concurrency: int, max_tokens: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        captions_dir = Path(tmp) / "captions"
        captions_dir.mkdir()
        keys = [f"{i}.png" for i in range(len(texts))]
        pq.write_table(pa.table({
            "caption_id": [ids.caption_id("bench", k, t) for k, t in zip(keys, texts, strict=True)],
            "image_id": [ids.image_id("bench", k) for k in keys], "image_uri": keys, "caption": texts,
            "source": ["bench"] * len(texts)}), captions_dir / "captions.parquet")  # fmt: skip
        atomic_write_json(captions_dir / "manifest.json", {"stage": "captions"})
        cfg = TripletsConfig(endpoints=[url], model=model, concurrency=concurrency, batch_size=256,
                             sampling={"max_tokens": max_tokens})  # fmt: skip
        started = time.perf_counter()
        summary = generate_triplets(cfg, captions_dir, Path(tmp) / "out", show_progress=False)
        return summary.captions / (time.perf_counter() - started)


def start_scripted() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(REPO / "tests/scripted_openai_server.py"), str(port), "bench"])
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("scripted server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--endpoint")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()

    process = None
    url = args.endpoint
    if url is None:
        process, url = start_scripted()
    try:
        texts = captions(args.n)
        bodies = [request_body(t, args.model, args.max_tokens) for t in texts]
        asyncio.run(bare_aiohttp(url, bodies[: min(200, args.n)], args.concurrency))  # warm-up
        baseline = asyncio.run(bare_aiohttp(url, bodies, args.concurrency))
        client = asyncio.run(chat_client(url, args.model, texts, args.concurrency, args.max_tokens))
        whole = stage(url, args.model, captions(args.n + 1)[1:], args.concurrency, args.max_tokens)
    finally:
        if process is not None:
            process.terminate()
            process.wait()
    server = "instant scripted server" if args.endpoint is None else args.endpoint
    print(f"triplets bench: {args.n} requests, concurrency {args.concurrency}, against {server}")
    print(f"{'what':<36}{'requests/s':>12}{'ratio':>8}")
    for name, rate in (("bare aiohttp (baseline)", baseline), ("ChatClient", client), ("whole stage", whole)):
        print(f"{name:<36}{rate:>12.1f}{rate / baseline:>8.2f}")
    for name, rate in (("ChatClient", client), ("whole stage", whole)):
        print("RESULT " + json.dumps({"compared": f"{name} / bare aiohttp", "ratio": round(rate / baseline, 3),
                                      "figure": f"{rate:.0f} requests/s"}))


if __name__ == "__main__":
    main()
