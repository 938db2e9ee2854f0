"""An async client for one or more OpenAI-compatible servers (vLLM, or any other).

Keeps ``concurrency`` requests in flight over all endpoints so a GPU server's continuous
batching stays full; retries connection errors, timeouts, 429 and 5xx with exponential
backoff and jitter; takes an endpoint that keeps failing out of rotation for a cool-down
(doubling each time) and tries it again afterwards. A 4xx other than 429 is the request's
own fault and is not retried.

Two choices keep the client far faster than any LLM server (bench/bench_triplets.py):
requests go through the SDK's ``post`` rather than ``chat.completions.create``, which
re-walks every message and the JSON schema against its typed params on each call (two
thirds of the client's CPU time), and the SDK's aiohttp transport replaces httpx's
default pool, whose bookkeeping grows with connections x queued requests (3x slower
at 64 in flight).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

RETRYABLE = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
FAILURES_BEFORE_COOLDOWN = 3
# Idle connections are dropped before the server drops them: uvicorn (vLLM's server) closes
# them after 5 s, the SDK's default expiry is also 5 s, and the race made hundreds of requests
# fail at once on connections closing under them after any 5-s lull (issue 16's rehearsal).
KEEPALIVE_EXPIRY_S = 2.0


class RequestFailed(Exception):
    """Every attempt failed on transport or server errors: the caption was not answered."""


class RequestRefused(Exception):
    """The server refused the request itself (4xx): retrying would not help."""


@dataclass
class Completion:
    """One answer and what it cost."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int


@dataclass
class Endpoint:
    """A server and its health as this client has seen it."""

    url: str
    client: openai.AsyncOpenAI
    consecutive_failures: int = 0
    cooldown: float = 0.0
    available_at: float = 0.0


@dataclass
class EndpointPool:
    """Round-robin over endpoints that are not cooling down."""

    endpoints: list[Endpoint]
    base_cooldown: float = 2.0
    max_cooldown: float = 60.0
    _next: int = field(default=0, init=False)

    async def acquire(self) -> Endpoint:
        """The next available endpoint; waits for the first to come back when all are out."""
        while True:
            now = time.monotonic()
            for _ in range(len(self.endpoints)):
                endpoint = self.endpoints[self._next % len(self.endpoints)]
                self._next += 1
                if endpoint.available_at <= now:
                    return endpoint
            await asyncio.sleep(min(e.available_at for e in self.endpoints) - now)

    def succeeded(self, endpoint: Endpoint) -> None:
        endpoint.consecutive_failures, endpoint.cooldown = 0, 0.0

    def failed(self, endpoint: Endpoint) -> None:
        """After a few failures in a row the endpoint sits out, twice as long each time.

        Failures that land while it already sits out are requests sent before the cool-down
        began (hundreds are in flight at once): they are one strike, not more. Counting each
        (issue 16's rehearsal) took a single endpoint from 2 s to the 60-s cap in one burst of
        timeouts, and every retry then fired at once, timed out together and did it again.
        """
        if time.monotonic() < endpoint.available_at:
            return
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures >= FAILURES_BEFORE_COOLDOWN:
            endpoint.cooldown = min(self.max_cooldown, max(self.base_cooldown, endpoint.cooldown * 2))
            endpoint.available_at = time.monotonic() + endpoint.cooldown
            endpoint.consecutive_failures = 0


class ChatClient:
    """Chat completions with bounded concurrency, retries and endpoint rotation."""

    def __init__(
        self,
        endpoints: list[str],
        model: str,
        concurrency: int,
        timeout: float,
        max_attempts: int,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        defaults = openai.DEFAULT_CONNECTION_LIMITS
        limits = type(defaults)(max_connections=max(defaults.max_connections or 0, concurrency),
                                max_keepalive_connections=concurrency, keepalive_expiry=KEEPALIVE_EXPIRY_S)  # fmt: skip
        self._http = openai.DefaultAioHttpClient(timeout=timeout, limits=limits)
        self.pool = EndpointPool(
            [
                Endpoint(url, openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=timeout,
                                                 http_client=self._http))
                for url in endpoints
            ],
            base_cooldown=max(backoff * 4, 0.05),
        )  # fmt: skip
        self.model = model
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._slots = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self._http.aclose()

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.5)

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        """One chat completion; raises RequestFailed or RequestRefused."""
        last_error: Exception | None = None
        for attempt in range(self.max_attempts):
            endpoint = await self.pool.acquire()
            try:
                async with self._slots:
                    response = await endpoint.client.post(
                        "/chat/completions", body={"model": self.model, "messages": messages, **params},
                        cast_to=ChatCompletion,
                    )
            except RETRYABLE as exc:
                self.pool.failed(endpoint)
                last_error = exc
                await asyncio.sleep(self._delay(attempt))
                continue
            except openai.APIStatusError as exc:
                raise RequestRefused(f"{exc.status_code} {exc.message}"[:300]) from exc
            self.pool.succeeded(endpoint)
            choice = response.choices[0]
            usage = response.usage
            return Completion(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                attempts=attempt + 1,
            )
        raise RequestFailed(f"{self.max_attempts} attempts failed; last: {type(last_error).__name__}: {last_error}")
