"""The backend protocol: a distribution over options, or text, for each of many conversations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agents.conversation import Message


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


class Backend(Protocol):
    """What the engine needs from a model server; one call answers a whole batch."""

    kind: str

    def identity(self) -> dict[str, Any]:
        """Model, adapter and settings that determine the answers (for manifests and caches)."""
        ...

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """For each query, the probability of each option label as the first answer token."""
        ...

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """For each query, generated text (greedy)."""
        ...


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
