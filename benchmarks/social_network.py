"""What the social condition costs: the flagship against security_disclosure_social.yaml (the same
twins, plus a small-world network and the neighbours' answers in half of the prompts).

    python benchmarks/social_network.py [--participants 929] [--model builtin:tiny] [--repeats 1]

Each arm is `python run.py run SCENARIO --model M --participants N` in its own process, so its
peak RSS is its own (os.wait4); arms alternate (flagship, social, flagship, ...) and the medians
are compared. Printed per arm: wall seconds, the run's own seconds and backend calls (manifest
`timing`), prompt tokens submitted and computed (transformers), peak RSS; then the social /
flagship ratio of the medians (issue 15's goal: at most 1.5) and the load average. The social
prompts are longer (the neighbours' sentence, and from round 2 its memory): the ratio includes
that, the graph, and the summaries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARMS = {"flagship": ROOT / "scenarios" / "security_disclosure.yaml",
        "social": ROOT / "scenarios" / "security_disclosure_social.yaml"}


def one_run(scenario: Path, out: Path, model: str, participants: int) -> dict[str, Any]:
    """Run one arm in a child process; its wall time, peak RSS and manifest timing."""
    command = [sys.executable, str(ROOT / "run.py"), "run", str(scenario), "--model", model,
               "--participants", str(participants), "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{scenario.name} failed: {child.stderr.read().decode()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    timing = manifest.get("timing") or {}
    tokens = (manifest.get("sessions") or [{}])[-1].get("tokens") or {}
    return {"wall_s": wall, "run_s": timing.get("seconds"),
            "backend_calls": timing.get("backend_calls"), "tokens": tokens,
            "peak_rss_mb": usage.ru_maxrss / 1024, "network": manifest.get("network")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=929)
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ARMS}
    with tempfile.TemporaryDirectory(prefix="social-bench-") as folder:
        for rep in range(args.repeats):
            for name, scenario in ARMS.items():
                found = one_run(scenario, Path(folder) / f"{name}-{rep}", args.model,
                                args.participants)
                results[name].append(found)
                print(f"{name:9s} rep {rep}: wall {found['wall_s']:.1f} s, run "
                      f"{found['run_s']} s, backend calls {found['backend_calls']}, tokens "
                      f"{found['tokens']}, peak RSS {found['peak_rss_mb']:.0f} MB", flush=True)
    median = {name: statistics.median(r["run_s"] for r in runs) for name, runs in results.items()}
    wall = {name: statistics.median(r["wall_s"] for r in runs) for name, runs in results.items()}
    print(f"graph: {results['social'][0]['network']}")
    print(f"social / flagship, the runs' own seconds (median of {args.repeats}): "
          f"{median['social'] / median['flagship']:.3f} (goal <= 1.5); wall incl. start-up "
          f"{wall['social'] / wall['flagship']:.3f}; {args.participants} participants, "
          f"{args.model}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
