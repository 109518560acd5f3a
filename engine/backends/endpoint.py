"""Reaching an OpenAI-compatible endpoint: retries with backoff, what it cost, how it failed.

429, 408, 5xx, timeouts and dropped connections are retried with exponential backoff and full
jitter, up to `max_retries`, then `BackendUnavailable` is raised; other 4xx raise
`BackendRequestError` at once. aiohttp is imported only when a request is sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.backends.base import BackendError
from engine.backends.completions import Request

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


class BackendUnavailable(BackendError):
    """The endpoint kept failing (status, timeout or connection) after every retry."""


class BackendRequestError(BackendError):
    """The endpoint rejected a request in a way retrying cannot fix (a 4xx other than 408/429)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: per-request retries with exponential backoff and full jitter."""

    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 120.0
    max_invalid: int = 3

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry `attempt` (0-based); a server's Retry-After wins, capped."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** attempt))


@dataclass
class Counters:
    """What the endpoint cost: requests sent, retries, unreadable answers, answers given up on."""

    requests: int = 0
    retries: int = 0
    invalid: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for a run manifest."""
        return {"requests": self.requests, "retries": self.retries, "invalid": self.invalid,
                "failed": self.failed, "reasons": dict(self.reasons)}


@dataclass
class Endpoint:
    """One completions URL, how hard to try it, and what it has cost so far."""

    url: str
    retry: RetryPolicy
    counters: Counters = field(default_factory=Counters)

    async def post(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, request: Request,
                   which: tuple[int, ...]) -> str:
        """The response body, retrying what a retry can fix; holds a slot only while in flight."""
        import aiohttp

        failure = "no attempt"
        for attempt in range(self.retry.max_retries + 1):
            retry_after = None
            async with gate:
                await request.ready.wait()
                data = request.body(which)
                self.counters.requests += 1
                try:
                    async with session.post(self.url, data=data) as response:
                        status, headers = response.status, response.headers
                        body = (await response.read()).decode("utf-8", errors="replace")
                except TimeoutError:  # aiohttp's own timeout errors are TimeoutErrors too
                    failure = f"timed out after {self.retry.timeout} s"
                except aiohttp.ClientError as exc:
                    failure = f"connection failed ({type(exc).__name__})"
                else:
                    if status < 400:
                        return body
                    failure, retry_after = f"HTTP {status}", _retry_after(headers)
                    if not _retryable(status):
                        raise BackendRequestError(f"{self.url} answered HTTP {status}: {body[:300]}")
            if attempt == self.retry.max_retries:
                break
            self.counters.retries += 1
            delay = self.retry.delay(attempt, retry_after)
            log.warning("%s: %s; retry %d of %d in %.2f s", self.url, failure, attempt + 1,
                        self.retry.max_retries, delay)
            await asyncio.sleep(delay)
        raise BackendUnavailable(f"{self.url}: {failure}, after {self.retry.max_retries + 1} attempts")


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header in seconds (an HTTP date is ignored: backoff applies instead)."""
    try:
        return max(0.0, float(headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def run_sync(work: Coroutine[Any, Any, list[Any]]) -> list[Any]:
    """Run a coroutine to completion from synchronous code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1) as pool:  # e.g. called from a notebook's loop
        return pool.submit(asyncio.run, work).result()
