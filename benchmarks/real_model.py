"""The flagship on the real model (builtin:smollm2-135m): answers per second by backend and dtype.

    python benchmarks/real_model.py [--participants 20] [--configs transformers:float32,vllm:bfloat16]

Each configuration runs a fresh subset of the flagship (same twins, same seed) through
`run_scenario` and prints the simulation's seconds (model loaded), the wall time with the model
load, answers per second and the 1-minute load average before and after (the figures are only
comparable on a quiet machine). The model is converted into the cache first, outside the timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGSHIP = Path(__file__).resolve().parent.parent / "scenarios" / "security_disclosure.yaml"
MODEL = "builtin:smollm2-135m"
CONFIGS = "transformers:float32,transformers:bfloat16,vllm:float32,vllm:bfloat16"
# In-process vLLM on CPU: the flagship's prompts are under 1k tokens; eager mode starts fastest.
VLLM_OPTIONS = {"max_model_len": 2048, "gpu_memory_utilization": 0.3, "enforce_eager": True}


def measure(kind: str, dtype: str, participants: int, out: Path) -> dict[str, float]:
    """One configuration's run: seconds (simulation, and with the model load), answers/s."""
    import pandas as pd

    from engine.model_source import with_model
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario

    loaded = with_model(load_scenario(FLAGSHIP), MODEL)
    options = {"dtype": dtype, **(VLLM_OPTIONS if kind == "vllm" else {})}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = run_scenario(loaded, participants=participants, out=out, backend_kind=kind,
                          backend_options=options)
    wall = time.perf_counter() - started
    answers = len(pd.read_parquet(out / "responses.parquet"))
    return {"answers": answers, "seconds": result.seconds, "wall": wall,
            "answers_per_s": answers / result.seconds, "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    """Print one line per configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--configs", default=CONFIGS, help=f"KIND:DTYPE,... (default {CONFIGS})")
    args = parser.parse_args()
    from engine.tiny_model import ensure_builtin

    started = time.perf_counter()
    model_dir = ensure_builtin(MODEL)  # converted once; a no-op when cached
    print(f"model {MODEL} at {model_dir} ({time.perf_counter() - started:.1f} s to find or "
          f"convert); {os.cpu_count()} CPUs", flush=True)
    print(f"{'backend':12} {'dtype':9} {'twins':>5} {'answers':>7} {'sim s':>7} {'wall s':>7} "
          f"{'answers/s':>9} {'load before/after':>18}", flush=True)
    for config in args.configs.split(","):
        kind, _, dtype = config.partition(":")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                m = measure(kind, dtype, args.participants, Path(tmp) / "run")
            except Exception as exc:  # e.g. a dtype this CPU build refuses: say so, go on
                print(f"{kind:12} {dtype:9} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
        print(f"{kind:12} {dtype:9} {args.participants:>5} {m['answers']:>7} {m['seconds']:>7.1f} "
              f"{m['wall']:>7.1f} {m['answers_per_s']:>9.2f} "
              f"{m['load_before']:>8.2f} / {m['load_after']:<8.2f}", flush=True)


if __name__ == "__main__":
    main()
