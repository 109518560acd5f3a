"""Prove a refactor changed nothing a user sees: run the same commands on two commits, compare bytes.

    python scripts/same_outputs.py BASE_REF [--head DIR] [--keep DIR]

Checks out BASE_REF into a temporary git worktree, then runs the same commands in it and in
`--head` (default: this working tree) with this interpreter and the same seed: a flagship subset
(run + score), a LoRA finetune on a pilot, a run of the base and finetuned policies on the
finetune's holdout twins (+ score), and the peers survey. Every output a user reads is compared
byte for byte: responses.parquet, transcripts, report.json, the adapter's weights and its
training record (JSON without times and the trees' own paths). Exit 0 when all are
identical, 1 otherwise (listing the files). About 90 s on two quiet cores (builtin:tiny).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = "scenarios/security_disclosure.yaml"
PEERS = "scenarios/peers_survey.yaml"

# (label, arguments of run.py); OUT is replaced by the output directory of the tree.
COMMANDS: list[tuple[str, list[str]]] = [
    ("flagship run", ["run", FLAGSHIP, "--participants", "24", "--seed", "11", "--out", "OUT/run"]),
    ("flagship score", ["score", "OUT/run"]),
    ("finetune", ["finetune", FLAGSHIP, "--pilot", "0.1", "--seed", "11", "--epochs", "1",
                  "--out", "OUT/ft"]),
    ("finetuned run", ["run", FLAGSHIP, "--policies", "base,ft=OUT/ft", "--twins",
                       "holdout:OUT/ft/training.json", "--participants", "16", "--seed", "11",
                       "--out", "OUT/ftrun"]),
    ("finetuned score", ["score", "OUT/ftrun"]),
    ("peers run", ["run", PEERS, "--participants", "30", "--seed", "3", "--out", "OUT/peers"]),
]
# Files whose bytes must agree (JSON without times and paths: see `digest`).
COMPARED = ["run/responses.parquet", "run/transcripts.jsonl", "run/report.json",
            "ft/adapter_model.safetensors", "ft/training.json",
            "ftrun/responses.parquet", "ftrun/transcripts.jsonl", "ftrun/report.json",
            "peers/responses.parquet", "peers/transcripts.jsonl"]
TIMES = ("seconds", "started", "finished", "created", "elapsed", "duration")


def run_all(tree: Path, out: Path) -> None:
    """Run every command of COMMANDS in `tree`, writing under `out`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    for label, args in COMMANDS:
        argv = [sys.executable, str(tree / "run.py"), *[a.replace("OUT", str(out)) for a in args]]
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{tree}: {label} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def digest(path: Path, tree: Path, out: Path) -> str:
    """SHA-256 of a compared file; in JSON, the tree's and the output's own paths are
    placeholders (they differ by construction) and wall-clock fields are left out."""
    if not path.is_file():
        return "missing"
    data = path.read_bytes()
    if path.suffix == ".json":
        data = data.replace(str(tree).encode(), b"<tree>").replace(str(out).encode(), b"<out>")
        data = json.dumps(_timeless(json.loads(data)), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def _timeless(value: object) -> object:
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not any(t in k for t in TIMES)
                and k != "packages"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare against (e.g. a tag or a hash)")
    parser.add_argument("--head", type=Path, default=ROOT, help="the tree to check (default: here)")
    parser.add_argument("--keep", type=Path, help="write both trees' outputs here and keep them")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="same-outputs-")) if args.keep is None else args.keep
    base_tree = work / "base-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree),
                    args.base], check=True, capture_output=True)
    trees = {"base": base_tree, "head": args.head.resolve()}
    try:
        for name, tree in trees.items():
            print(f"running {name} ({tree}) ...", flush=True)
            run_all(tree, work / name)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                       capture_output=True)
    differ = []
    for rel in COMPARED:
        a, b = (digest(work / name / rel, tree, work / name) for name, tree in trees.items())
        same = a == b and a != "missing"
        print(f"{'same  ' if same else 'DIFFER'} {rel}  {a[:12]}  {b[:12]}")
        if not same:
            differ.append(rel)
    print(f"{len(COMPARED) - len(differ)} of {len(COMPARED)} files identical; outputs in {work}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
