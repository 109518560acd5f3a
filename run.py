"""Command line: run, validate and inspect scenarios. Wires the rooms together; holds no logic."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from engine.cli_grammar import build_parser, parse_backend_options
from engine.progress import progress_bar
from scenarios.errors import InputError, Problem

# Nothing heavy at the top: `--help` and a refused command must not wait for torch, transformers,
# mesa or statsmodels (each command imports what it uses; tests/test_hostile_cli.py holds this).

console = Console()
errors = Console(stderr=True, soft_wrap=True)
EXIT_BAD_INPUT = 2


def say(text: str, to: Console = console) -> None:
    """Print text as it is: no markup, no highlighting, never wrapped."""
    to.print(text, markup=False, highlight=False, soft_wrap=True)


def suggest(commands: Sequence[str], heading: str = "next:") -> None:
    """What to do next with what a command made (on stderr: stdout keeps only the result)."""
    if commands:
        errors.print(heading, style="bold", markup=False, highlight=False)
        for command in commands:
            say(f"  {command}", errors)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a scenario file and print a one-line summary."""
    from engine.scenario_check import load_checked

    loaded = load_checked(args.scenario)
    s = loaded.scenario
    rows = f", {len(loaded.human.table)} reference rows" if loaded.human is not None else ""
    console.print(f"OK {args.scenario}: {s.name}: {len(s.conditions)} factors, "
                  f"{len(s.rounds)} rounds, {len(s.stages)} stages, {len(s.questions)} questions"
                  f"{rows}", markup=False, highlight=False, soft_wrap=True)
    from scenarios.missing_values import missing_report

    for line in missing_report(loaded):
        say(line)
    for warning in loaded.warnings:  # does not fail: exit code 0
        say(f"warning: {warning}", errors)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or continue) a scenario and print the run directory."""
    from engine.commands import check_run_paths

    check_run_paths(args.out, args.resume)  # first, in milliseconds

    from engine.commands import prepare_run
    from engine.run_request import RunRequest

    prepared = prepare_run(RunRequest(
        scenario=args.scenario, participants=args.participants, seed=args.seed, out=args.out,
        resume=args.resume, fresh=args.fresh, policies=args.policies, twins=args.twins,
        backend=args.backend, backend_options=parse_backend_options(args.backend_option),
        model=args.model))
    with progress_bar("loading model") as update:
        policies = prepared.policies()
        result = prepared.run(policies, update)
    if result.already_complete:
        errors.print("this run is already complete; nothing to do (--fresh recomputes it)",
                     highlight=False)
    else:
        if result.rebuilt:
            errors.print(f"the run's tables were damaged ({result.rebuilt}); rebuilt from its "
                         "response cache", markup=False, highlight=False)
        each = f" × {len(policies)} policies" if len(policies) > 1 else ""
        cache = (f"; {result.cache_hits} answers from the cache, {result.cache_misses} computed"
                 if result.cache_hits else "")
        invalid = (f"; {result.invalid_answers} INVALID answers (see the manifest)"
                   if result.invalid_answers else "")
        whole = prepared.whole_population()
        subset = (f" (a SUBSET: {result.participants} of the {whole} twins; leave out "
                  "--participants for all)" if whole and result.participants < whole else "")
        errors.print(f"{result.participants} participants{each}{subset}, {result.backend_calls} "
                     f"backend calls, {result.seconds:.1f} s{cache}{invalid}; model "
                     f"{prepared.loaded.scenario.model}", markup=False, highlight=False)
    say(str(result.run_dir))
    from engine.commands import next_commands

    suggest(next_commands(result.run_dir))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Finetune a LoRA policy on a pilot of the human rows and print the adapter directory."""
    from engine.commands import FinetuneRequest, prepare_finetune
    from engine.finetune_settings import TrainingSettings

    settings = TrainingSettings(
        rank=args.rank, alpha=args.alpha, dropout=args.dropout, learning_rate=args.lr,
        epochs=args.epochs, batch_size=args.batch_size, loss=args.loss, device=args.device,
        dtype=args.dtype,
        target_modules=tuple(m.strip() for m in args.target_modules.split(",") if m.strip()))
    prepared = prepare_finetune(FinetuneRequest(
        scenario=args.scenario, out=args.out, pilot=args.pilot, sample=args.sample,
        seed=args.seed, model=args.model, no_demographics=args.no_demographics,
        settings=settings))
    with progress_bar("preparing the pilot") as update:
        result = prepared.run(update)
    errors.print(f"pilot {len(result.split.pilot)} participants ({result.examples} answers), "
                 f"holdout {len(result.split.holdout)}; final loss {result.final_loss:.3f}, "
                 f"{result.seconds:.1f} s", highlight=False)
    say(str(result.adapter_dir))
    adapter = shlex.quote(str(result.adapter_dir))
    suggest([f"python run.py run {shlex.quote(str(args.scenario))} --policies base,ft={adapter} "
             f"--twins holdout:{adapter}/training.json"])
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """Train every variant, run base and every variant on the holdout twins, score, and print and
    write the paper's table (study.json, study.md); a killed study continues where it stopped."""
    from engine.study import prepare_study

    plan, out = prepare_study(args.scenario, out=args.out, grid=args.grid, seed=args.seed,
                              model=args.model, participants=args.participants,
                              backend=args.backend)

    from analysis.errors import AnalysisInputError  # scoring's imports, once the plan holds
    from analysis.report import score_run
    from analysis.study_table import print_study, study_document, write_study
    from engine.study_session import study_directory
    with study_directory(plan, out) as session:
        with progress_bar("training") as update:
            session.train(update)
            run_dir = session.simulate(update)
        with session.scoring(run_dir):
            try:
                report = score_run(run_dir, bootstrap=plan.study.bootstrap, seed=plan.seed)
            except AnalysisInputError as exc:
                raise InputError([Problem(str(run_dir), None, "score", str(exc))]) from None
            document = study_document(session.record(), report)
            written = write_study(out, document)
        session.finish()
    print_study(document, console)
    for path in written:
        say(str(path))
    from engine.commands import next_commands

    suggest(next_commands(run_dir, scored=True))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one participant's whole transcript (or one policy's, one round's)."""
    from engine.transcript_view import render_transcript

    render_transcript(args.run_dir, args.participant, console, policy=args.policy,
                      round_id=args.round)
    return 0


def scored(run_dir: Path, human: Path | None = None, bootstrap: int = 1000,
           seed: int = 0) -> dict[str, Any] | None:
    """Score under the run directory's lock and write report.json; None (error printed) when the
    run cannot be scored."""
    from analysis.errors import AnalysisInputError
    from analysis.report import score_run
    from contracts.run_format import REPORT
    from engine.lock import hold_directory

    try:
        # report.json has one writer, and a run still being written is not scored.
        with hold_directory(run_dir, purpose="score", field=REPORT, create=False,
                            advice="wait for it, then score again"):
            return score_run(run_dir, human=human, bootstrap=bootstrap, seed=seed)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return None


def cmd_score(args: argparse.Namespace) -> int:
    """Score a run against the human (or reference) data; write report.json and print tables."""
    from analysis.headline import headline_lines
    from analysis.render import print_report
    from contracts.run_format import HTML_REPORT, REPORT

    report = scored(args.run_dir, args.human, args.bootstrap, args.seed)
    if report is None:
        return EXIT_BAD_INPUT
    print_report(report, console)
    console.rule("In short", style="bold")
    for line in headline_lines(report):
        console.print(f"- {line}", markup=False, highlight=False)
    say(str(args.run_dir / REPORT))
    stale = (args.run_dir / HTML_REPORT).is_file()
    suggest([f"python run.py report {shlex.quote(str(args.run_dir))}"],
            "next: report.html is older than this score; rewrite it:" if stale else
            "next: the same report for a browser (writes report.html):")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.html (scoring the run first when it has no report.json); print its path."""
    from contracts.run_format import REPORT

    if not (args.run_dir / REPORT).is_file():
        errors.print(f"{args.run_dir} has no {REPORT} yet: scoring it first (the defaults of "
                     "`run.py score`)", markup=False, highlight=False)
        if scored(args.run_dir) is None:
            return EXIT_BAD_INPUT
    from analysis.errors import AnalysisInputError
    from analysis.html_report import write_html_report

    try:
        path = write_html_report(args.run_dir)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    say(str(path))
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the run's answers as one flat CSV (one row per participant x round x question)."""
    from analysis.errors import AnalysisInputError
    from analysis.export import export_csv

    try:
        written = export_csv(args.run_dir, args.out)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    if written is not None:
        say(str(written))
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    """Prediction-powered inference on a run: humans only, simulated only and PPI++ side by side;
    writes inference.json (and into report.json) and prints the tables."""
    from analysis.errors import AnalysisInputError
    from analysis.inference_render import print_inference
    from analysis.inference_run import infer_run
    from contracts.run_format import INFERENCE, REPORT
    from engine.lock import hold_directory

    try:
        with hold_directory(args.run_dir, purpose="infer", field=REPORT, create=False,
                            advice="wait for it, then run infer again"):
            section = infer_run(args.run_dir, human=args.human, labelled=args.labelled,
                                rectification=args.rectification, seed=args.seed,
                                alpha=args.alpha, estimands=args.estimand,
                                width=args.target_width)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    print_inference(section, console)
    say(str(args.run_dir / INFERENCE))
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    """Write a commented scenario scaffolded from a data file; print its path and what to fill."""
    from scenarios.scaffold import write_scaffold

    out = args.out or Path("scenarios") / f"{args.name}.yaml"
    written = write_scaffold(args.name, args.from_csv, out)
    plan = written.proposal
    errors.print(f"{len(plan.columns)} columns: {len(plan.demographics)} demographics, "
                 f"{len(plan.conditions)} conditions, {len(plan.questions)} questions, "
                 f"{len(plan.unused)} not used; {written.places} places to FILL IN",
                 markup=False, highlight=False)
    say(str(out))
    suggest([f"python run.py validate {shlex.quote(str(out))}  (names every FILL IN left)",
             f"python run.py preview {shlex.quote(str(out))}"])
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Print the exact messages, options and labels of one participant-round (no model)."""
    from engine.preview import preview_scenario
    from engine.preview_view import print_preview

    preview, tokens = preview_scenario(args.scenario, participant=args.participant,
                                       round_id=args.round, policy=args.policy, model=args.model,
                                       participants=args.participants, seed=args.seed)
    print_preview(preview, console, tokens)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line grammar (engine/cli_grammar.py) with this module's handlers."""
    return build_parser(__doc__, {
        "run": cmd_run, "finetune": cmd_finetune, "study": cmd_study, "validate": cmd_validate,
        "show": cmd_show, "score": cmd_score, "report": cmd_report, "export": cmd_export,
        "infer": cmd_infer, "new": cmd_new, "preview": cmd_preview})


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
