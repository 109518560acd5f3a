"""Any OpenAI-compatible completions endpoint, vLLM's server first: async, bounded, retried.

Prompts are rendered locally with the model directory's chat template (exactly as the
transformers backend renders them) and sent to `/v1/completions` with aiohttp, at most
`max_in_flight` requests open; the server batches them. A request holds one query's prompt, or
with `prompts_per_request` > 1 up to that many prompts of queries that differ only in their
prompt (same policy, labels and sampling): fewer requests cost the server and this client
less per answer. Two dialects:

- `vllm` (exact): the prompt goes as token ids, and vLLM's `logprob_token_ids` extension returns
  the raw log-probability of every option label token, keyed `token_id:N`.
- `openai` (approximate): the prompt goes as text (the server tokenizes it again and may add
  a BOS token) and labels are looked up among the first token's `top_logprobs`; a label
  outside the top-k makes the answer unreadable.

Failures are never silent. 429, 408, 5xx, timeouts and dropped connections are retried with
exponential backoff and full jitter, up to `max_retries`, then `BackendUnavailable` is raised;
other 4xx raise `BackendRequestError` at once (a request of several prompts is retried whole;
engine/backends/endpoint.py).
An answer that arrives but cannot be read is counted in `counters.invalid` with its reason and
asked again (with only the other unread prompts of its request), up to `max_invalid` attempts
in all; after that a choice answer is returned as a Distribution with `invalid` set (NaN probs,
never cached) and a text answer raises `UnreadableAnswerError`. The API key is read from the
environment variable named `api_key_env` and never stored, logged or put in identity().
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.backends.base import (
    Adapters,
    BackendError,
    ChoiceQuery,
    Distribution,
    TextQuery,
    invalid_distribution,
    missing_package,
)
from engine.backends.chat_template import ChatPrompt
from engine.backends.completions import (
    Job,
    Prompt,
    Request,
    Unreadable,
    choices,
    read_choice,
    read_text,
    read_token_text,
    render_ahead,
    requests_of,
)
from engine.backends.endpoint import Counters, Endpoint, RetryPolicy, run_sync
from engine.weights import adapter_identity, weights_digest
from scenarios.schema import Identifier

if TYPE_CHECKING:  # aiohttp loads when the backend is built, not when its options are checked
    import aiohttp

log = logging.getLogger(__name__)
BASE = "base"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Query parameters that carry a secret (compared lower-case, '-' as '_'): api_key, key, token,
# access_token, x-api-key, subscription-key, client_secret, password, auth, sig, signature, ...
_SECRET_WORDS = ("key", "token", "secret", "passw", "auth", "signature", "credential")


def url_credentials(url: str) -> str | None:
    """Where a URL carries credentials (None: it does not): `user:password@` or a query or
    fragment parameter named like a key or token. The value itself is never repeated."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "user:password@"
    for text in (parts.query, parts.fragment):
        for name, _ in parse_qsl(text, keep_blank_values=True):
            norm = name.strip().lower().replace("-", "_")
            if norm in ("sig", "pwd", "pass") or any(word in norm for word in _SECRET_WORDS):
                return f"a '{name}=' parameter"
    return None


class Options(BaseModel):
    """`backend: openai`: any OpenAI-compatible completions endpoint (vLLM's server first).

    The model directory still gives the tokenizer and chat template; prompts are rendered here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1, pattern=r"^https?://")
    served_model: str | None = Field(default=None, min_length=1)
    served: dict[Identifier, str] = Field(default_factory=dict)
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dialect: Literal["vllm", "openai"] = "vllm"
    max_in_flight: int = Field(default=32, ge=1)
    # Prompts sharing every other field go together in one request, up to this many (the server
    # answers a list of prompts): fewer requests, less per-request cost on both sides.
    prompts_per_request: int = Field(default=1, ge=1)
    top_logprobs: int = Field(default=20, ge=1)
    max_retries: int = Field(default=6, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    timeout: float = Field(default=120.0, gt=0)
    max_invalid: int = Field(default=3, ge=1)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_the_url(cls, value: str) -> str:
        problem = url_credentials(value)
        if problem:  # the manifest records base_url and `run` prints it: no secret may be in it
            raise ValueError(f"base_url holds credentials ({problem}); put the key in the "
                             "environment variable named by api_key_env, which is never written "
                             "down")
        return value


def build(model_dir: Path, adapters: Adapters, seed: int, options: Options) -> OpenAIBackend:
    """A client of the endpoint the options name, rendering prompts with `model_dir`'s template."""
    try:
        import aiohttp  # noqa: F401 (the one package this backend adds)
    except ImportError as exc:
        raise missing_package("openai", "aiohttp", "pip install aiohttp", exc) from None
    return OpenAIBackend(model_dir, adapters=adapters, seed=seed, **options.model_dump())


class UnreadableAnswerError(RuntimeError):
    """A text answer could not be read within the bound of attempts."""


class OpenAIBackend:
    """Queries an OpenAI-compatible server; one call answers a whole batch, concurrently.

    `adapters` maps a policy to its local LoRA adapter directory (recorded in identity, for
    caches); `served` maps a policy to the model name the server knows it by (default: the
    policy's own name, as in `--lora-modules NAME=PATH`). `base` is served as `served_model`,
    by default the model directory's path, which is what vLLM serves it as. The arguments are
    those of `Options`, already validated there.
    """

    kind = "openai"

    def __init__(self, model_dir: str | Path, *, base_url: str,
                 adapters: Mapping[str, Path | str | None] | None = None,
                 served: Mapping[str, str] | None = None, served_model: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", dialect: Literal["vllm", "openai"] = "vllm",
                 max_in_flight: int = 32, prompts_per_request: int = 1, top_logprobs: int = 20,
                 seed: int = 0, temperature: float = 0.0, **retry: Any) -> None:
        self.model_dir = Path(model_dir)
        self.chat = ChatPrompt(self.model_dir)
        self.url = base_url.rstrip("/") + "/completions"
        self.base_url, self.dialect, self.api_key_env = base_url, dialect, api_key_env
        # Not in identity(): how prompts are packed into requests does not change the answers.
        self.max_in_flight, self.prompts_per_request = max_in_flight, prompts_per_request
        self.top_logprobs = top_logprobs
        self.seed, self.temperature = seed, temperature
        self.retry = RetryPolicy(**retry)
        self.adapters = {name: str(path) for name, path in (adapters or {}).items() if path}
        names = [BASE, *(adapters or {}), *(served or {})]
        self.served = {name: (served or {}).get(name, name) for name in names}
        self.served[BASE] = (served or {}).get(BASE, served_model or str(self.model_dir))
        self.counters = Counters()
        self.endpoint = Endpoint(self.url, self.retry, self.counters)
        self._warned = False

    def identity(self) -> dict[str, Any]:
        """Endpoint, served names, tokenizer directory, dialect and sampling; never the API key."""
        weights = self._weights()
        return {"backend": self.kind, "base_url": self.base_url, "dialect": self.dialect,
                "model_dir": str(self.model_dir), "served": dict(self.served),
                **({"weights_sha256": weights} if weights else {}),
                "seed": self.seed, "temperature": self.temperature, "api_key_env": self.api_key_env,
                **({"adapters": dict(self.adapters)} if self.adapters else {})}

    def _weights(self) -> str | None:
        """The weights' digest when the model directory holds weights (it may be tokenizer only)."""
        weights = any(self.model_dir.glob("*.safetensors")) or any(self.model_dir.glob("*.bin"))
        return weights_digest(self.model_dir) if weights else None

    def _model_identity(self) -> dict[str, Any]:
        weights = self._weights()
        return {"backend": self.kind, "dialect": self.dialect, "model_dir": str(self.model_dir),
                **({"weights_sha256": weights} if weights else {}),
                "seed": self.seed, "temperature": self.temperature}

    def answer_identity(self, policy: str) -> dict[str, Any]:
        """Tokenizer directory, dialect and sampling, and `policy`'s adapter and served name; not
        where the server is nor which variable holds its key (they change no answer)."""
        return {"model": self._model_identity(),
                "adapter": {"adapter": adapter_identity(self.adapters.get(policy)),
                            "served": self.served.get(policy)}}

    def usage(self) -> dict[str, dict[str, Any]]:
        """Requests sent, retries, unreadable answers and answers given up on."""
        return {"endpoint": self.counters.as_dict()}

    def close(self) -> None:
        """Nothing to free: each batch opens and closes its own connections."""

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prompt(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads, ending where the answer begins."""
        return self.chat.text(messages)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """Probability of each option label as the first answer token, renormalised."""
        return run_sync(self._answer_all([self._choice_job(q) for q in queries]))

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """Text for each query: greedy unless the backend was given a temperature."""
        return run_sync(self._answer_all([self._text_job(q) for q in queries]))

    def _base_fields(self, policy: str) -> dict[str, Any]:
        if policy not in self.served:  # checked before anything is sent
            raise ValueError(f"policy {policy!r} is not registered with this backend; "
                             f"registered: {', '.join(self.served)}")
        return {"model": self.served[policy], "seed": self.seed}

    def _renderer(self, messages: Sequence[Any]) -> Callable[[], Prompt]:
        if self.dialect == "vllm":
            return lambda: self.chat.ids(messages)
        return lambda: self.chat.text(messages)

    def _choice_job(self, query: ChoiceQuery) -> Job:
        ids = self.chat.label_ids(query.labels)
        payload = {**self._base_fields(query.policy), "max_tokens": 1, "temperature": 0.0}
        if self.dialect == "vllm":
            keys = [f"token_id:{i}" for i in ids]
            payload.update(logprobs=len(set(ids)), logprob_token_ids=ids,
                           return_tokens_as_token_ids=True)
        else:
            keys = [self.chat.tokenizer.decode([i]) for i in ids]
            payload.update(logprobs=self.top_logprobs)
        return Job(payload, self._renderer(query.messages),
                   lambda choice: read_choice(choice, query.labels, keys),
                   lambda reasons: invalid_distribution(len(ids), reasons))

    def _text_job(self, query: TextQuery) -> Job:
        payload = {**self._base_fields(query.policy), "max_tokens": query.max_tokens,
                   "temperature": self.temperature}
        render = self._renderer(query.messages)
        if self.dialect == "openai":
            return Job(payload, render, read_text, _raise_unreadable)
        # Decoded here as the transformers backend decodes (the server's incremental detokenizer
        # would hold back a trailing partial UTF-8 byte).
        payload["return_token_ids"] = True
        return Job(payload, render, lambda choice: read_token_text(choice, self._decode),
                   _raise_unreadable)

    def _decode(self, ids: list[int]) -> str:
        return self.chat.tokenizer.decode(ids, skip_special_tokens=True)

    async def _answer_all(self, jobs: list[Job]) -> list[Any]:
        """Every job's answer, in order, with at most max_in_flight requests open."""
        if not jobs:
            return []
        import aiohttp

        planned = requests_of(jobs, self.prompts_per_request)
        # aiohttp, not httpx: about 0.3 ms of client CPU per request against 6.5 ms measured
        # for httpx here, CPU a server on the same machine would otherwise lose. The gate
        # bounds requests in flight; the connector's pool is as large, so a request never
        # waits for a connection inside its timeout.
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
        gate = asyncio.Semaphore(self.max_in_flight)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers=self._headers()) as session:
            tasks: list[asyncio.Task[list[Any]]] = []
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(render_ahead([request for _, request in planned]))
                    tasks += [group.create_task(self._answer(session, gate, request))
                              for _, request in planned]
            except ExceptionGroup as failures:  # the first real error, with what did arrive
                first = failures.exceptions[0]
                if isinstance(first, BackendError):
                    first.partial = _in_order(len(jobs), planned, tasks)
                raise first from None
        return _in_order(len(jobs), planned, tasks)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        headers = {"Content-Type": "application/json"}
        if not key:
            return headers
        host = urlsplit(self.base_url).hostname or ""
        if self.base_url.startswith("http://") and host not in LOCAL_HOSTS and not self._warned:
            self._warned = True
            log.warning("sending the key from $%s to %s over plain http (not encrypted); use "
                        "https, or unset the variable if the server needs no key",
                        self.api_key_env, host)
        return {**headers, "Authorization": f"Bearer {key}"}

    async def _answer(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore,
                      request: Request) -> list[Any]:
        """Ask until every answer of the request is read, at most max_invalid times each; each
        new attempt asks only for the answers still unread."""
        answers: list[Any] = [None] * len(request.jobs)
        reasons: list[list[str]] = [[] for _ in request.jobs]
        unread = tuple(range(len(request.jobs)))
        for _ in range(self.retry.max_invalid):
            body = await self.endpoint.post(session, gate, request, unread)
            try:
                got: list[Any] = choices(body, len(unread))
            except Unreadable as exc:
                got = [exc] * len(unread)
            still = []
            for position, choice in zip(unread, got, strict=True):
                try:
                    if isinstance(choice, Unreadable):
                        raise choice
                    answers[position] = request.jobs[position].read(choice)
                except Unreadable as exc:
                    self.counters.invalid += 1
                    self.counters.reasons[str(exc)] += 1
                    reasons[position].append(str(exc))
                    log.warning("unreadable answer from %s: %s", self.url, exc)
                    still.append(position)
            unread = tuple(still)
            if not unread:
                return answers
        for position in unread:
            self.counters.failed += 1
            tried = reasons[position]
            answers[position] = request.jobs[position].give_up(
                f"unreadable after {len(tried)} attempts: " + "; ".join(tried))
        return answers


def _in_order(count: int, planned: list[tuple[list[int], Request]],
              tasks: list[asyncio.Task[list[Any]]]) -> list[Any]:
    """Each job's answer at its own position; None where its request has not finished."""
    answers: list[Any] = [None] * count
    for (positions, _), task in zip(planned, tasks, strict=False):
        if task.done() and not task.cancelled() and task.exception() is None:
            for position, answer in zip(positions, task.result(), strict=True):
                answers[position] = answer
    return answers


def _raise_unreadable(reasons: str) -> str:
    raise UnreadableAnswerError(reasons)
