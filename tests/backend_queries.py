"""Queries shaped like the flagship's, for comparing backends: short to ~700 tokens, 2-5 options."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.conversation import Message
from engine.backends.base import ChoiceQuery, TextQuery

WORDS = ("pirate queen north south beach gold coins raid defend island round security official "
         "statement believe likely unlikely percent deployed measures treasure attack").split()
LABEL_SETS = (("A", "B", "C"), ("A", "B"), ("C", "A", "B"), ("A", "B", "C", "D", "E"))


def conversation(rng: np.random.Generator, words: int) -> tuple[Message, ...]:
    """A persona + stimulus system message of about `words` words and a lettered question."""
    stimulus = " ".join(rng.choice(WORDS, size=words))
    return (Message("system", f"You are a 34 year old participant. {stimulus}"),
            Message("user", "Which beach do you raid?\nA) North Beach\nB) South Beach\nC) Neither\n"
                            "Answer with the letter of one option."))


def choice_queries(policies: tuple[str, ...], count: int = 12, seed: int = 0) -> list[ChoiceQuery]:
    """Queries cycling through policies and label sets; one is flagship-long (~700 tokens)."""
    rng = np.random.default_rng(seed)
    lengths = [5, 40, 120, 300, 650, *rng.integers(5, 200, size=max(0, count - 5))][:count]
    return [ChoiceQuery(conversation(rng, int(n)), LABEL_SETS[i % len(LABEL_SETS)],
                        policies[i % len(policies)]) for i, n in enumerate(lengths)]


def text_queries(policies: tuple[str, ...], count: int = 4) -> list[TextQuery]:
    """Short free-text queries, one per policy in turn."""
    rng = np.random.default_rng(1)
    return [TextQuery(conversation(rng, 20 + 10 * i), max_tokens=8, policy=policies[i % len(policies)])
            for i in range(count)]


def max_abs_diff(left: list, right: list) -> float:
    """Largest absolute difference between two lists of distributions, option by option."""
    assert len(left) == len(right)
    return max(float(np.abs(a.probs - b.probs).max()) for a, b in zip(left, right, strict=True))


def compare_runs(left, right) -> tuple[float, int, int]:
    """Two runs' responses, twin by twin: (largest probability difference over the rows both
    runs reached with the same history, twins whose drawn answers ever differ, twins).

    A draw that lands within a rounding error of an option boundary can differ between backends;
    that twin's later prompts then differ too, so rows after its first differing answer are not
    compared."""
    import pandas as pd

    key = ["policy", "participant_id"]
    a = pd.read_parquet(Path(left) / "responses.parquet")
    b = pd.read_parquet(Path(right) / "responses.parquet")
    assert len(a) == len(b) and (a[[*key, "round", "question_id"]].values
                                 == b[[*key, "round", "question_id"]].values).all()
    worst, diverged = 0.0, 0
    groups = a.groupby(key, sort=False).indices
    for rows in groups.values():
        for i in rows:
            worst = max(worst, float(np.abs(np.asarray(a["probs"][i]) - np.asarray(b["probs"][i])).max()))
            if a["answer"][i] != b["answer"][i]:
                diverged += 1
                break
    return worst, diverged, len(groups)
