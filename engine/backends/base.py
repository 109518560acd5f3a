"""The backend protocol: a distribution over options, or text, for each of many conversations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from agents.conversation import Message
from scenarios.errors import InputError, Problem

if TYPE_CHECKING:
    from engine.backends.chat_template import ChatPrompt

Adapters = Mapping[str, Path | None]


@dataclass(frozen=True)
class ChoiceQuery:
    """Which option label comes first in the answer to this conversation, under this policy."""

    messages: tuple[Message, ...]
    labels: tuple[str, ...]
    policy: str = "base"


@dataclass(frozen=True)
class TextQuery:
    """Free text answering this conversation, under this policy."""

    messages: tuple[Message, ...]
    max_tokens: int = 64
    policy: str = "base"


@dataclass(frozen=True)
class Distribution:
    """Renormalised option probabilities and the raw probability mass the options had.

    `invalid` holds the reason when a remote backend could not read an answer within its bound;
    such a distribution's probs are NaN, so drawing from it fails loudly instead of guessing.
    """

    probs: np.ndarray
    option_mass: float
    invalid: str | None = None


class BackendError(RuntimeError):
    """A backend could not answer a batch (an endpoint down, a request refused).

    `partial` holds the answers that did arrive, in query order (None where none did), so a
    caller can keep them; the run stops with a message rather than a traceback.
    """

    def __init__(self, message: str, partial: list[Any] | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.saved = 0  # how many of them a response cache kept


@runtime_checkable
class Backend(Protocol):
    """Everything the engine uses of a model backend; one call answers a whole batch.

    The engine reaches a backend only through these members (no attribute probing). A backend is
    a context manager: leaving it frees its model or connections (`close`).
    """

    kind: str  # the registry name ("transformers", "vllm", "openai")
    model_dir: Path | None  # the local model directory (tokenizer, chat template), if any
    chat: ChatPrompt | None  # the one prompt-rendering path, when this backend renders here

    def identity(self) -> dict[str, Any]:
        """Model, adapters and settings of the whole backend, for the run manifest."""
        ...

    def answer_identity(self, policy: str) -> dict[str, Any]:
        """Exactly what determines `policy`'s answers to a given prompt (model, that policy's
        adapter, sampling settings), and nothing about where the backend is reached: the
        response cache hashes this and knows no backend's keys. Two entries: `model` (what
        every policy shares) and `adapter` (this policy's own part), so that adding a policy
        to a run leaves the other policies' cached answers valid."""
        ...

    def prompt(self, messages: Sequence[Message]) -> str:
        """The exact text the model reads for this conversation (chat template applied)."""
        ...

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """For each query, the probability of each option label as the first answer token."""
        ...

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """For each query, generated text (greedy)."""
        ...

    def usage(self) -> dict[str, dict[str, Any]]:
        """Counters for the manifest since the backend started, by name (`endpoint`: requests,
        retries; `tokens`: prompt tokens submitted and computed); empty when none are kept."""
        ...

    def close(self) -> None:
        """Free the model or connections; idempotent."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


class BackendModule(Protocol):
    """What the registry finds under a backend's name: a module (or any object) with the
    backend's `Options` model and its builder."""

    Options: ClassVar[type[BaseModel]]

    def build(self, model_dir: Path, adapters: Adapters, seed: int, options: Any) -> Backend:
        """The backend over `model_dir` serving `adapters`' policies, from validated `options`."""
        ...


class BackendWrapper:
    """A backend that passes every member of the contract on to `inner`; a wrapper (the
    response cache, a test's recording backend) overrides only what it changes."""

    kind: str

    def __init__(self, inner: Backend) -> None:
        self.inner, self.kind = inner, inner.kind

    @property
    def model_dir(self) -> Path | None:
        """The inner backend's model directory."""
        return self.inner.model_dir

    @property
    def chat(self) -> ChatPrompt | None:
        """The inner backend's prompt renderer."""
        return self.inner.chat

    def identity(self) -> dict[str, Any]:
        """The inner backend's identity."""
        return self.inner.identity()

    def answer_identity(self, policy: str) -> dict[str, Any]:
        """The inner backend's identity of `policy`'s answers."""
        return self.inner.answer_identity(policy)

    def prompt(self, messages: Sequence[Message]) -> str:
        """The inner backend's rendering of the conversation."""
        return self.inner.prompt(messages)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """The inner backend's distributions."""
        return self.inner.option_distributions(queries)

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """The inner backend's texts."""
        return self.inner.generate(queries)

    def usage(self) -> dict[str, dict[str, Any]]:
        """The inner backend's counters."""
        return self.inner.usage()

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()

    def __enter__(self) -> BackendWrapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def missing_package(kind: str, package: str, install: str, exc: ImportError) -> InputError:
    """The input error of a backend whose package does not import here: what to install."""
    return InputError([Problem("backend", None, kind, f"the {kind} backend needs {package}, "
                               f"which does not import here ({exc}); {install}")])


def invalid_distribution(n_options: int, reason: str) -> Distribution:
    """An answer that could not be read: NaN probabilities and the reason."""
    return Distribution(np.full(n_options, np.nan), float("nan"), invalid=reason)


def options_from_logprobs(label_logprobs: np.ndarray) -> Distribution:
    """Renormalise the first answer token's log-probabilities over the option labels.

    The shared definition of an answer distribution: every backend computes log p(label token)
    at the answer position, then renormalises over the options. Done in float64 so rows sum to
    1 within 1e-12.
    """
    logp = np.asarray(label_logprobs, dtype=np.float64)
    top = logp.max()
    weights = np.exp(logp - top)
    return Distribution(weights / weights.sum(), float(np.exp(top) * weights.sum()))
