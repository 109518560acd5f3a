"""Collect a step's queries, group them by policy, and make one backend call per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from engine.backends.base import Backend, ChoiceQuery, Distribution


class Batcher:
    """Sends every query of a step to the backend in as few calls as there are policies."""

    def __init__(self, backend: Backend, answered: Callable[[int], None] | None = None) -> None:
        self.backend = backend
        self.calls = 0
        self.answered = answered  # told how many queries each backend call answered (progress)

    def distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """Option distributions for all queries, in the order given."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, query in enumerate(queries):
            groups[query.policy].append(i)
        out: list[Distribution | None] = [None] * len(queries)
        for indices in groups.values():
            self.calls += 1
            # A backend renders each query's prompt once per call (the response cache, which
            # renders it for the key as well, remembers it for the call: CachedBackend).
            answers = self.backend.option_distributions([queries[i] for i in indices])
            if len(answers) != len(indices):
                raise RuntimeError(
                    f"backend {self.backend.kind} returned {len(answers)} answers "
                    f"for {len(indices)} queries")
            for i, answer in zip(indices, answers, strict=True):
                out[i] = answer
            if self.answered is not None:
                self.answered(len(indices))
        return [d for d in out if d is not None]
