"""Prompt-token counters for the benchmarks: the engine's backends' and vLLM's prefix cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.backends.base import Backend
    from engine.backends.transformers_backend import TransformersBackend


def token_counters(backend: Backend) -> dict[str, float]:
    """The backend's numeric usage counters (`usage()`), flattened: `tokens.submitted`,
    `tokens.computed` for the transformers backend; empty when it keeps none."""
    return {f"{group}.{name}": float(value) for group, values in backend.usage().items()
            for name, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def forget_kept_prefixes(backend: TransformersBackend) -> None:
    """Drop the prompts' keys and values the backend keeps between calls, if it keeps any."""
    if backend.prefix is not None:
        backend.prefix.forget()


def vllm_prefix_tokens(llm: Any) -> tuple[float, float]:
    """vLLM's prefix-cache counters: prompt tokens looked up, and those found cached."""
    totals = {"queries": 0.0, "hits": 0.0}
    for metric in llm.get_metrics():
        for key in totals:
            if metric.name.startswith(f"vllm:prefix_cache_{key}"):
                totals[key] += float(getattr(metric, "value", 0) or 0)
    return totals["queries"], totals["hits"]


def counted(run: Callable[[int], float], counters: Callable[[], tuple[float, float]],
            seen: dict[str, float]) -> Callable[[int], float]:
    """`run`, keeping in `seen` how far the (looked up, cached) token counters moved in it."""
    def wrapped(i: int) -> float:
        before = counters()
        seconds = run(i)
        after = counters()
        seen.update(looked_up=after[0] - before[0], cached=after[1] - before[1])
        return seconds
    return wrapped


def report_tokens(label: str, seen: dict[str, float], answers: int, results: dict[str, Any],
                  workload: int | None = None) -> None:
    """Prompt tokens per answer: the workload's, those sent to vLLM, those it computed."""
    per = {**({"workload": workload / answers} if workload is not None else {}),
           "sent": seen["looked_up"] / answers,
           "computed": (seen["looked_up"] - seen["cached"]) / answers}
    print(f"{label} prompt tokens per answer: " + ", ".join(f"{k} {v:.1f}" for k, v in per.items())
          + " (computed: not prefix-cache hits)", flush=True)
    results[f"{label}_tokens_per_answer"] = per
