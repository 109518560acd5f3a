"""The flagship on the transformers backend, this tree against an earlier commit, same seed.

    python benchmarks/against_commit.py --commit c02546e [--participants 24]
        [--model builtin:smollm2-135m] [--dtype float32] [--repeats 1] [--arms commit,here]

"Before this issue" is a commit, not an option of today's code: this checks the commit out in a
temporary git worktree and runs the same flagship run there and here, each arm in a fresh
subprocess whose imports are made before its clock starts (both use this environment's
packages), arms interleaved (commit, here, commit, here, ...) so load on a shared machine falls
on both. Every backend option is left at its default in both trees except `dtype`. Prints each
arm's seconds and peak RSS, the speed ratio, the load average, and whether the two trees gave the same
answers and how far apart their probabilities are. `--arms here` times this tree alone (a run
too long to time twice: its seconds per participant, no ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent.parent

# Run inside the subprocess, with the tree to time first on sys.path.
ARM = """
import json, sys, time
from pathlib import Path
tree, participants, model, dtype, out = sys.argv[1:6]
sys.path.insert(0, tree)
from scenarios.loader import load_scenario
from engine.runner import run_scenario
try:
    from engine.model_source import with_model
except ImportError:  # older trees kept it in the runner
    from engine.runner import with_model
from transformers import AutoModelForCausalLM  # imports made before the clock starts
loaded = with_model(load_scenario(Path(tree) / "scenarios" / "security_disclosure.yaml"), model)
started = time.perf_counter()
run_scenario(loaded, participants=int(participants), out=Path(out), fresh=True,
             backend_kind="transformers", backend_options={"dtype": dtype})
import resource
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def arm(tree: Path, participants: int, model: str, dtype: str, out: Path) -> dict:
    """One flagship run of `tree` in a fresh interpreter: its seconds and answers table."""
    done = subprocess.run([sys.executable, "-c", ARM, str(tree), str(participants), model, dtype,
                           str(out)], capture_output=True, text=True, check=False, cwd=tree)
    if done.returncode:
        raise SystemExit(f"the run in {tree} failed:\n{done.stderr[-3000:]}")
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    table = pd.read_parquet(out / "responses.parquet").sort_values(
        ["participant_id", "policy", "round", "stage", "question_id"]).reset_index(drop=True)
    tokens = json.loads((out / "manifest.json").read_text()).get("backend", {}).get("tokens")
    return {**timed, "table": table, "tokens": tokens}


def computed(tokens: dict | None) -> str:
    """The share of prompt tokens computed, where the tree counts them."""
    if not tokens or not tokens.get("prompt_submitted"):
        return ""
    share = tokens["prompt_computed"] / tokens["prompt_submitted"]
    return f", {share:.1%} of {tokens['prompt_submitted']} prompt tokens computed"


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool, float]:
    """Whether two runs' answers are all the same, and the largest probability difference."""
    same = a["answer"].tolist() == b["answer"].tolist()
    gap = max(float(np.abs(np.asarray(x, dtype=float) - np.asarray(y, dtype=float)).max())
              for x, y in zip(a["probs"], b["probs"], strict=True))
    return same, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--commit", help="the commit to time against, e.g. the parent of an "
                        "issue's first commit")
    parser.add_argument("--participants", type=int, default=24)
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=1, help="pairs of interleaved arms")
    parser.add_argument("--arms", default="commit,here", choices=["commit,here", "here"])
    args = parser.parse_args()
    if args.arms == "here":
        alone(args)
        return
    if not args.commit:
        parser.error("--commit is needed unless --arms here")
    print(f"flagship, {args.participants} participants, {args.model}, {args.dtype}: "
          f"{args.commit} against this tree; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    times: dict[str, list[float]] = {"commit": [], "here": []}
    tables: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="against-commit-") as scratch:
        old = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(old),
                        args.commit], check=True)
        try:
            for repeat in range(args.repeats):
                for name, tree in (("commit", old), ("here", HERE)):
                    result = arm(tree, args.participants, args.model, args.dtype,
                                 Path(scratch) / f"{name}-{repeat}")
                    times[name].append(result["seconds"])
                    tables.setdefault(name, result["table"])
                    print(f"  {name:6}: {result['seconds']:7.1f} s, peak RSS "
                          f"{result['peak_rss_gb']:.2f} GiB{computed(result['tokens'])}; load "
                          f"{os.getloadavg()[0]:.2f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(old)],
                           check=False)
    before, now = min(times["commit"]), min(times["here"])
    same, gap = compare(tables["commit"], tables["here"])
    print(f"best of {args.repeats}: {args.commit} {before:.1f} s, this tree {now:.1f} s, "
          f"speed-up {before / now:.2f}x; answers the same: {same}; largest probability "
          f"difference {gap:.2e}; load average now {os.getloadavg()[0]:.2f}")


def alone(args: argparse.Namespace) -> None:
    """This tree's flagship run alone, `repeats` times: seconds, per participant, peak RSS."""
    print(f"flagship, {args.participants} participants, {args.model}, {args.dtype}: this tree "
          f"alone; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="against-commit-") as scratch:
        for repeat in range(args.repeats):
            result = arm(HERE, args.participants, args.model, args.dtype,
                         Path(scratch) / f"here-{repeat}")
            print(f"  here: {result['seconds']:7.1f} s ({result['seconds'] / args.participants:.2f}"
                  f" s per participant), peak RSS {result['peak_rss_gb']:.2f} GiB"
                  f"{computed(result['tokens'])}; load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
