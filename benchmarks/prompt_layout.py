"""How much the prompt layout changes answers: the flagship under `persona_first` and `shared_first`.

    python benchmarks/prompt_layout.py [--participants 20] [--backend vllm] [--dtype bfloat16]
                                       [--model builtin:smollm2-135m] [--seed 3]

Both layouts run the same twins with the same seed on one backend (one engine, started before
either is timed; vLLM's prefix cache then favours shared_first, which is the point of it).
Per question it prints, over the participants and rounds:
  - js: the Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint) between the two layouts'
    pooled answer distributions (the mean of the participants' option probabilities);
  - mean |dp|: the mean absolute change of an option's probability, participant by participant;
  - the same two for round 1 alone, where both layouts see identical histories (in later rounds
    the memory holds answers drawn under each layout, which may differ).
The load average is printed beside the timings: on a busy machine only the answers compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGSHIP = Path(__file__).resolve().parent.parent / "scenarios" / "security_disclosure.yaml"
LAYOUTS = ("persona_first", "shared_first")
# In-process vLLM on CPU: the flagship's prompts are under 1k tokens; eager mode starts fastest.
VLLM_OPTIONS = {"max_model_len": 2048, "gpu_memory_utilization": 0.3, "enforce_eager": True}


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (the square root of the divergence; in [0, 1])."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def paired(tables: dict[str, Any]) -> Any:
    """One row per (participant, round, question) with both layouts' probabilities and answers."""
    keys = ["participant_id", "round", "question_id"]
    a, b = (tables[layout][[*keys, "probs", "answer"]] for layout in LAYOUTS)
    return a.merge(b, on=keys, suffixes=("_a", "_b"), validate="one_to_one")


def compare(tables: dict[str, Any]) -> list[dict[str, Any]]:
    """Per question: JS distance of the pooled distributions and mean |dp|, all rounds and round 1."""
    both = paired(tables)
    rows = []
    for question, group in both.groupby("question_id", sort=False):
        row: dict[str, Any] = {"question": question}
        for name, part in (("all", group), ("r1", group[group["round"] == 1])):
            pa, pb = np.stack(part["probs_a"].to_numpy()), np.stack(part["probs_b"].to_numpy())
            row[f"js_{name}"] = js_distance(pa.mean(axis=0), pb.mean(axis=0))
            row[f"dp_{name}"] = float(np.abs(pa - pb).mean())
        rows.append(row)
    return rows


def main() -> None:
    """Run both layouts, print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="vllm")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    import pandas as pd

    from engine.backends import create_backend
    from engine.model_source import with_model
    from engine.runner import run_scenario
    from engine.tiny_model import ensure_builtin
    from scenarios.loader import load_scenario

    loaded = with_model(load_scenario(FLAGSHIP), args.model)
    model_dir = ensure_builtin(args.model) if args.model.startswith("builtin:") else Path(args.model)
    options = {"dtype": args.dtype, **(VLLM_OPTIONS if args.backend == "vllm" else {})}
    backend = create_backend(args.backend, model_dir, seed=args.seed, options=options)
    tables = {}
    if hasattr(backend, "llm"):
        _ = backend.llm  # start the vLLM engine outside the timing (it starts on first use)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for layout in LAYOUTS:
                variant = replace(loaded, scenario=loaded.scenario.model_copy(
                    update={"prompt_layout": layout}))
                load, started = os.getloadavg()[0], time.perf_counter()
                run_scenario(variant, participants=args.participants, seed=args.seed,
                             out=Path(tmp) / layout, backend=backend)
                tables[layout] = pd.read_parquet(Path(tmp) / layout / "responses.parquet")
                print(f"{layout}: {len(tables[layout])} answers in "
                      f"{time.perf_counter() - started:.1f} s (load average {load:.1f} before, "
                      f"{os.getloadavg()[0]:.1f} after)", flush=True)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    print(f"\n{args.model}, {args.backend} {args.dtype}, {args.participants} twins, seed "
          f"{args.seed}: persona_first vs shared_first")
    print(f"{'question':<18} {'js (all)':>9} {'mean|dp| (all)':>15} {'js (r1)':>8} "
          f"{'mean|dp| (r1)':>14}")
    for row in compare(tables):
        print(f"{row['question']:<18} {row['js_all']:>9.4f} {row['dp_all']:>15.4f} "
              f"{row['js_r1']:>8.4f} {row['dp_r1']:>14.4f}")
    both = paired(tables)
    same = float((both["answer_a"] == both["answer_b"]).mean())
    print(f"drawn answers equal in {same:.1%} of {len(both)} rows (same seed, same draw order)")


if __name__ == "__main__":
    main()
