"""A scripted OpenAI-compatible server for fault injection, client benchmarks and the
paper-scale rehearsal (``bench/rehearse.py``): a stand-in for a vLLM host.

Run: ``python tests/scripted_openai_server.py PORT [MODEL]``, or from Python with
:func:`start_server` / :func:`stop_server` (a subprocess, so its CPU and memory are not the
client's, as a real LLM host's are not). The answer to a chat request is chosen by a tag in
the caption of the last user message:

- ``[bad-json]`` truncated JSON; ``[missing]`` no ``modified_caption``; ``[identical]`` the
  caption unchanged; ``[long]`` an over-long modification;
- ``[500x2]`` / ``[429x1]`` fail that many times, then answer; ``[hang]`` the first request
  sleeps past any sane timeout; ``[drop]`` the first request's connection is cut mid-body;
- anything else: a valid edit derived from the caption ("make it red").

Environment (each optional):

- ``SCRIPTED_DELAY`` (seconds) delays every chat answer: an LLM's latency, or a run made
  long enough to kill;
- ``SCRIPTED_ANSWERS=varied``: untagged captions get one of several realistic edits (colour
  swap, addition, scene, count, style; 4-7 word modifications, the caption rewritten), picked
  by a hash of the caption, instead of "make it red";
- ``SCRIPTED_FAULT_RATE`` (0-1): that share of *untagged* captions, picked by a hash of the
  caption (the same ones on every run), gets one fault as if tagged, dealt evenly over
  ``500`` (first request), ``bad-json`` (every answer: a reject), ``hang`` and ``drop``
  (first request): an LLM host's mix of server errors, garbage and timeouts.

``GET /stats`` returns how many chat requests arrived and, per fault, how many times it
was served (``{"chat_requests": n, "faults": {"500": k, ...}}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

MODEL = "scripted"
DELAY = float(os.environ.get("SCRIPTED_DELAY", "0"))
VARIED = os.environ.get("SCRIPTED_ANSWERS", "fixed") == "varied"
FAULT_RATE = float(os.environ.get("SCRIPTED_FAULT_RATE", "0"))
INJECTED = ("500", "bad-json", "hang", "drop")
TAG = re.compile(r"\[([a-z0-9-]+?)(?:x(\d+))?\]")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "pink")
ADDITIONS = ("a small dog", "a red umbrella", "a wooden bench", "two birds", "a parked bicycle", "a street lamp")
SCENES = ("on a snowy street", "at night under street lights", "on a sunny beach", "in a busy market")
STYLES = ("a watercolor painting", "a pencil sketch", "an old black and white photo", "a cartoon drawing")
seen: Counter[str] = Counter()
faults_served: Counter[str] = Counter()


def _unit(caption: str, salt: str) -> float:
    """A stable number in [0, 1) for the caption: the same caption, the same draw."""
    return int(hashlib.sha256(f"{salt}:{caption}".encode()).hexdigest()[:12], 16) / 16**12


def injected_fault(caption: str) -> str | None:
    """The fault ``SCRIPTED_FAULT_RATE`` deals this untagged caption, if any."""
    draw = _unit(caption, "fault")
    return INJECTED[int(draw / FAULT_RATE * len(INJECTED))] if draw < FAULT_RATE else None


def varied_edit(caption: str) -> dict[str, str]:
    """One realistic edit of ``caption``, chosen by its hash: what a 7B model writes."""
    pick = int(_unit(caption, "edit") * 1e6)
    words = caption.rstrip(".").split()
    old = next((w for w in words if w.lower() in COLOURS), None)
    new = COLOURS[pick % len(COLOURS)] if old != COLOURS[pick % len(COLOURS)] else COLOURS[(pick + 1) % 10]
    text = " ".join(words)
    kind = ("color", "add", "scene", "count", "style")[pick % 5]
    if kind == "color" and old is not None:
        return {"modification": f"make the {old} things {new} instead", "edit_type": "color",
                "modified_caption": " ".join(new if w == old else w for w in words)}  # fmt: skip
    if kind in ("color", "add"):
        thing = ADDITIONS[pick % len(ADDITIONS)]
        return {"modification": f"add {thing} next to it", "modified_caption": f"{text} with {thing} next to it",
                "edit_type": "add"}  # fmt: skip
    if kind == "scene":
        place = SCENES[pick % len(SCENES)]
        return {"modification": f"move the whole scene {place}", "modified_caption": f"{text} {place}",
                "edit_type": "scene"}  # fmt: skip
    if kind == "count":
        return {"modification": "show two of them instead of one", "modified_caption": f"two copies of {text}",
                "edit_type": "count"}  # fmt: skip
    style = STYLES[pick % len(STYLES)]
    return {"modification": f"make it look like {style}", "modified_caption": f"{style} of {text}",
            "edit_type": "style"}  # fmt: skip


def answer_text(caption: str, tag: str | None) -> str:
    edit = {"modification": "make it red", "modified_caption": f"{caption} in red", "edit_type": "color"}
    if tag is None and VARIED:
        edit = varied_edit(caption)
    if tag == "bad-json":
        return json.dumps(edit)[:25]
    if tag == "missing":
        del edit["modified_caption"]
    if tag == "identical":
        edit["modified_caption"] = caption
    if tag == "long":
        edit["modification"] = "make it " + "very " * 60 + "red"
    return json.dumps(edit)


def completion(content: str, request: dict) -> bytes:
    # A realistic token count when answers are varied (about 4 characters a token).
    tokens = (sum(len(m["content"]) for m in request["messages"]) // 4, len(content) // 4) if VARIED else (20, 12)
    body = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)},
    }
    return json.dumps(body).encode()


async def send(send_fn, status: int, body: bytes, declared: int | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(declared or len(body)).encode())]
    await send_fn({"type": "http.response.start", "status": status, "headers": headers})
    await send_fn({"type": "http.response.body", "body": body})


async def read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _tag(caption: str) -> tuple[str | None, int, bool]:
    """The caption's fault, how many requests it lasts, and whether it was injected."""
    match = TAG.search(caption)
    if match:
        return match.group(1), int(match.group(2) or 1), False
    fault = injected_fault(caption) if FAULT_RATE else None
    return fault, 1, fault is not None


async def app(scope, receive, send_fn) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await send(send_fn, 200, b"")
        return
    if path == "/stats":
        stats = {"chat_requests": sum(seen.values()), "faults": dict(faults_served)}
        await send(send_fn, 200, json.dumps(stats).encode())
        return
    if path == "/v1/models":
        await send(send_fn, 200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
        return
    request = json.loads(await read_body(receive))
    caption = request["messages"][-1]["content"].removeprefix("Caption: ")
    tag, times, injected = _tag(caption)
    seen[caption] += 1
    attempt = seen[caption]
    faulty = tag == "bad-json" or (tag in ("500", "429", "hang", "drop") and attempt <= times)
    if injected and faulty:
        faults_served[tag] += 1
    if DELAY:
        await asyncio.sleep(DELAY)
    if tag in ("500", "429") and attempt <= times:
        await send(send_fn, int(tag), json.dumps({"error": {"message": f"scripted {tag}"}}).encode())
    elif tag == "hang" and attempt == 1:
        await asyncio.sleep(3600)
    elif tag == "drop" and attempt == 1:
        await send(send_fn, 200, b'{"id": "cut', declared=4096)
    else:
        await send(send_fn, 200, completion(answer_text(caption, tag), request))


# ------------------------------------------------------------- driving it from a test or bench


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    port: int, delay: float = 0.0, fault_rate: float = 0.0, varied: bool = False, model: str = "scripted"
) -> subprocess.Popen:
    """The server as a subprocess on ``port``, once it answers ``/health``."""
    env = {**os.environ, "SCRIPTED_DELAY": str(delay), "SCRIPTED_FAULT_RATE": str(fault_rate),
           "SCRIPTED_ANSWERS": "varied" if varied else "fixed"}  # fmt: skip
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(port), model], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("scripted server did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_stats(endpoint: str) -> dict:
    """``/stats`` of the server behind ``endpoint`` (``http://127.0.0.1:PORT/v1``)."""
    return httpx.get(endpoint.removesuffix("/v1") + "/stats", timeout=10).json()


if __name__ == "__main__":
    MODEL = sys.argv[2] if len(sys.argv) > 2 else MODEL
    # The cut connection is reported by uvicorn as an application error: keep the log quiet.
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="critical", access_log=False,
                timeout_graceful_shutdown=1)
