"""Batched engine vs a per-participant loop, same backend and model, at 1,000 participants.

    python benchmarks/batching.py [--participants 1000] [--rounds 1] [--model DIR] [--device cpu]

Both arms run the flagship's first round(s) through SurveyModel; the only difference is whether
the batcher sends a stage's queries to the backend in one call or one call per query.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.population import ParticipantSpec, build_population
from engine.backends.base import ChoiceQuery, Distribution
from engine.backends.transformers_backend import TransformersBackend
from engine.batcher import Batcher
from engine.model import SurveyModel
from engine.tiny_model import ensure_builtin
from scenarios.loader import load_scenario

FLAGSHIP = Path(__file__).resolve().parent.parent / "scenarios" / "security_disclosure.yaml"


class PerParticipantBatcher(Batcher):
    """The anti-pattern being measured: one backend call per participant's question."""

    def distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        out = []
        for query in queries:
            self.calls += 1
            out += self.backend.option_distributions([query])
        return out


def population(n: int) -> list[ParticipantSpec]:
    """n twins of the stand-in rows (cycled when n exceeds the 929 rows)."""
    rows = build_population(load_scenario(FLAGSHIP), None, seed=0)
    return [ParticipantSpec(f"B{i:04d}", rows[i % len(rows)].demographics,
                            rows[i % len(rows)].condition) for i in range(n)]


def timed(batcher: Batcher, specs: list[ParticipantSpec], steps: int) -> float:
    model = SurveyModel(load_scenario(FLAGSHIP).scenario, specs, batcher, seed=0)
    started = time.perf_counter()
    for _ in range(steps):
        model.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="HF model dir (default builtin:tiny)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    backend = TransformersBackend(args.model or ensure_builtin("builtin:tiny"), device=args.device)
    specs = population(args.participants)
    steps = args.rounds * len(load_scenario(FLAGSHIP).scenario.stages)
    timed(Batcher(backend), specs[:20], steps)  # warm-up
    batched = timed(Batcher(backend), specs, steps)
    looped = timed(PerParticipantBatcher(backend), specs, steps)
    n = args.participants
    print(f"model: {args.model or 'builtin:tiny (not pretrained)'} on {args.device}; "
          f"{n} participants x {args.rounds} round(s) ({steps} stages)")
    print(f"batched engine      : {batched:7.2f} s  {n / batched:8.1f} participants/s")
    print(f"per-participant loop: {looped:7.2f} s  {n / looped:8.1f} participants/s")
    print(f"ratio (loop time / batched time): {looped / batched:.2f}x")


if __name__ == "__main__":
    main()
