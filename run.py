"""Command line: run, validate and inspect scenarios. Wires the rooms together; holds no logic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scenarios.errors import InputError

console = Console()
errors = Console(stderr=True, soft_wrap=True)
EXIT_BAD_INPUT = 2


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a scenario file and print a one-line summary."""
    from scenarios.loader import load_scenario

    loaded = load_scenario(args.scenario)
    s = loaded.scenario
    rows = f", {len(loaded.human.table)} reference rows" if loaded.human is not None else ""
    console.print(f"OK {args.scenario}: {s.name}: {len(s.conditions)} factors, "
                  f"{len(s.rounds)} rounds, {len(s.stages)} stages, {len(s.questions)} questions"
                  f"{rows}", markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario and print the run directory."""
    from engine.runner import run_scenario
    from scenarios.loader import load_scenario

    loaded = load_scenario(args.scenario)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=False) as bar:
        task = bar.add_task("loading model", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        result = run_scenario(loaded, participants=args.participants, seed=args.seed,
                              out=args.out, progress=update)
    errors.print(f"{result.participants} participants, {result.backend_calls} backend calls, "
                 f"{result.seconds:.1f} s", highlight=False)
    console.print(str(result.run_dir), markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one participant's whole transcript."""
    from engine.transcript_view import render_transcript

    render_transcript(args.run_dir, args.participant, console)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a run against the human (or reference) data; write report.json and print tables."""
    from analysis.errors import AnalysisInputError
    from analysis.render import print_report
    from analysis.report import score_run

    try:
        report = score_run(args.run_dir, human=args.human, bootstrap=args.bootstrap, seed=args.seed)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    print_report(report, console)
    console.print(str(args.run_dir / "report.json"), markup=False, highlight=False, soft_wrap=True)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="run.py", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a scenario")
    run.add_argument("scenario", type=Path)
    run.add_argument("--participants", type=int, default=None,
                     help="simulate N participants (twins: a seeded subset of the data rows)")
    run.add_argument("--seed", type=int, default=None, help="overrides the scenario's seed")
    run.add_argument("--out", type=Path, default=None, help="run directory (default: runs/...)")
    run.set_defaults(handler=cmd_run)
    validate = sub.add_parser("validate", help="check a scenario file")
    validate.add_argument("scenario", type=Path)
    validate.set_defaults(handler=cmd_validate)
    show = sub.add_parser("show", help="print one participant's transcript")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--participant", required=True)
    show.set_defaults(handler=cmd_show)
    score = sub.add_parser("score", help="score a run against the human data")
    score.add_argument("run_dir", type=Path)
    score.add_argument("--human", type=Path, default=None, help="human data CSV (default: the run's)")
    score.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    score.add_argument("--seed", type=int, default=0, help="seed of bootstrap and split halves")
    score.set_defaults(handler=cmd_score)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input prints every problem and exits 2, never a traceback."""
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except InputError as exc:
        for problem in exc.problems:
            errors.print(f"error: {problem}", markup=False, highlight=False)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
