"""The flagship on the transformers backend with shared-prefix reuse on and off, same seed.

    python benchmarks/prefix_reuse.py [--participants 40] [--model builtin:tiny] [--dtype float32]
                                      [--repeats 1] [--prefix-cache-mb 1024]

Both arms run the whole flagship (every round and stage) through `run_scenario` with a fresh run
directory and the response cache unread, so every answer is computed; the only difference is the
backend option `prefix_reuse` (engine/backends/segments.py). Imports are made before any arm
is timed; arms are interleaved (on, off, on, off, ...) so load on a shared machine falls on
both. Prints each arm's seconds, prompt tokens computed/submitted (from the manifest), the
speed ratio, the load average before and after, and whether the two arms gave the same answers
and how far apart their probabilities are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from benchmarks.against_commit import compare
from engine.backends.transformers_backend import PREFIX_CACHE_MB
from engine.model_source import model_directory, with_model
from engine.runner import run_scenario
from scenarios.loader import load_scenario

FLAGSHIP = Path(__file__).resolve().parent.parent / "scenarios" / "security_disclosure.yaml"


def one_run(participants: int, model: str, dtype: str, reuse: bool, cache_mb: int,
            out: Path) -> dict:
    """Run the flagship once; its seconds, token counts and answers table."""
    loaded = with_model(load_scenario(FLAGSHIP), model)
    started = time.perf_counter()
    run_scenario(loaded, participants=participants, out=out, fresh=True, backend_kind="transformers",
                 backend_options={"dtype": dtype, "prefix_reuse": reuse,
                                  "prefix_cache_mb": cache_mb})
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = manifest["backend"]["tokens"]
    table = pd.read_parquet(out / "responses.parquet").sort_values(
        ["participant_id", "policy", "round", "stage", "question_id"]).reset_index(drop=True)
    return {"seconds": seconds, "tokens": tokens, "table": table}


def warm_up(model: str) -> None:
    """Import what a run loads (torch, transformers, the model's class) before any arm is timed:
    otherwise the first arm alone pays seconds of imports."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_directory(with_model(load_scenario(FLAGSHIP), model)))
    AutoModelForCausalLM.from_config(config)  # random weights: imports the modelling code only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--participants", type=int, default=40)
    parser.add_argument("--model", default="builtin:tiny", help="builtin:tiny, builtin:smollm2-135m "
                        "or a local model directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=1, help="pairs of interleaved arms")
    parser.add_argument("--prefix-cache-mb", type=int, default=PREFIX_CACHE_MB, help="MiB of "
                        "computed prompt pieces kept for later calls (the belief stage's for the "
                        "action stage); 0: shared within a call only")
    args = parser.parse_args()
    print(f"flagship, {args.participants} participants, {args.model}, {args.dtype}, "
          f"prefix_cache_mb {args.prefix_cache_mb}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    warm_up(args.model)
    results: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="prefix-reuse-") as scratch:
        for repeat in range(args.repeats):
            for reuse in (True, False):
                out = Path(scratch) / f"{'on' if reuse else 'off'}-{repeat}"
                result = one_run(args.participants, args.model, args.dtype, reuse,
                                 args.prefix_cache_mb, out)
                results[reuse].append(result)
                t = result["tokens"]
                print(f"  reuse {'on ' if reuse else 'off'}: {result['seconds']:7.1f} s, prompt "
                      f"tokens computed {t['prompt_computed']:,} of {t['prompt_submitted']:,} "
                      f"({t['prompt_computed'] / t['prompt_submitted']:.1%}); "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    on = min(r["seconds"] for r in results[True])
    off = min(r["seconds"] for r in results[False])
    same, gap = compare(results[True][0]["table"], results[False][0]["table"])
    print(f"best of {args.repeats}: on {on:.1f} s, off {off:.1f} s, speed-up {off / on:.2f}x; "
          f"answers the same: {same}; largest probability difference {gap:.2e}; "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
