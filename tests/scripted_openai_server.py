"""A scripted OpenAI-compatible server for fault injection and client benchmarks.

Run: ``python tests/scripted_openai_server.py PORT [MODEL]``. The answer to a chat request
is chosen by a tag in the caption of the last user message:

- ``[bad-json]`` truncated JSON; ``[missing]`` no ``modified_caption``; ``[identical]`` the
  caption unchanged; ``[long]`` an over-long modification;
- ``[500x2]`` / ``[429x1]`` fail that many times, then answer; ``[hang]`` the first request
  sleeps past any sane timeout; ``[drop]`` the first request's connection is cut mid-body;
- anything else: a valid edit derived from the caption ("make it red").

``GET /stats`` returns how many chat requests arrived.

``SCRIPTED_DELAY`` (seconds) delays every chat answer, to make a run long enough to kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections import Counter

import uvicorn

MODEL = sys.argv[2] if len(sys.argv) > 2 else "scripted"
DELAY = float(os.environ.get("SCRIPTED_DELAY", "0"))
TAG = re.compile(r"\[([a-z0-9-]+?)(?:x(\d+))?\]")
seen: Counter[str] = Counter()


def answer_text(caption: str, tag: str | None) -> str:
    edit = {"modification": "make it red", "modified_caption": f"{caption} in red", "edit_type": "color"}
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
    body = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", MODEL),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
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


async def app(scope, receive, send_fn) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await send(send_fn, 200, b"")
        return
    if path == "/stats":
        await send(send_fn, 200, json.dumps({"chat_requests": sum(seen.values())}).encode())
        return
    if path == "/v1/models":
        await send(send_fn, 200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
        return
    request = json.loads(await read_body(receive))
    caption = request["messages"][-1]["content"].removeprefix("Caption: ")
    match = TAG.search(caption)
    tag, times = (match.group(1), int(match.group(2) or 1)) if match else (None, 0)
    seen[caption] += 1
    attempt = seen[caption]
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


if __name__ == "__main__":
    # The cut connection is reported by uvicorn as an application error: keep the log quiet.
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="critical", access_log=False,
                timeout_graceful_shutdown=1)
