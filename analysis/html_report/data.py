"""Gather what the page shows from a run directory: report.json, the run (read_run), the transcripts.

The transcript browser's data are compacted for big runs: every distinct line of message text is
stored once in a string table and a message names its lines by index (the system message repeats
the instructions and, from round 2, the memory of earlier rounds; questions repeat for everyone).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import AnalysisInputError
from analysis.metrics.coherence import contradictions
from analysis.run_dir import RunInputs, read_run
from analysis.samples import Sample
from contracts.run_format import REPORT, TRANSCRIPTS, ResolvedStage, TranscriptLine

ROLES = ("system", "user", "assistant")
PROB_DIGITS = 4


@dataclass(frozen=True)
class Gathered:
    """Everything the page is made of."""

    report: dict[str, Any]
    inputs: RunInputs
    browser: dict[str, Any]


def read_report(run_dir: Path) -> dict[str, Any]:
    """report.json as written by `score`; a clear AnalysisInputError when missing or damaged."""
    path = run_dir / REPORT
    if not path.is_file():
        raise AnalysisInputError(f"{path}: missing; run `python run.py score {run_dir}` first "
                                 "(the page is made from the scored report)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(f"{path}: not valid JSON ({exc}); score the run again") from None
    missing = [key for key in ("policies", "tables", "reference", "samples")
               if not isinstance(report, dict) or key not in report]
    if missing:
        raise AnalysisInputError(f"{path}: not a scored report (missing {missing}); score the "
                                 "run again")
    return report


class StringTable:
    """Distinct strings, each stored once; `index` returns a string's position."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, text: str) -> int:
        found = self._index.get(text)
        if found is None:
            found = self._index[text] = len(self.strings)
            self.strings.append(text)
        return found

    def lines(self, text: str) -> list[int]:
        return [self.index(line) for line in text.split("\n")]


def _transcript_lines(run_dir: Path) -> Iterator[TranscriptLine]:
    path = run_dir / TRANSCRIPTS
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AnalysisInputError(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(record, dict) or "participant_id" not in record:
                raise AnalysisInputError(f"{path}:{number}: expected a transcript message "
                                         "object with 'participant_id'")
            yield record  # type: ignore[misc]


def _message(line: TranscriptLine, strings: StringTable, roles: StringTable) -> list[Any]:
    """[role, round, stage, question, lines, probs, answer, invalid]: the role by its index in
    `roles`, every text by its index in `strings`."""
    def ref(value: Any) -> int | None:
        return None if value is None else strings.index(str(value))

    probs = line.get("probs")
    return [roles.index(str(line.get("role"))),
            line.get("round"), ref(line.get("stage")), ref(line.get("question_id")),
            strings.lines(str(line.get("content", ""))),
            None if probs is None else [round(float(p), PROB_DIGITS) for p in probs],
            ref(line.get("answer")), ref(line.get("invalid"))]


def _label(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _answers(sample: Sample, row: int, inputs: RunInputs) -> dict[str, dict[str, str | None]]:
    """round -> question -> the option id answered (None: missing)."""
    experiment = inputs.experiment
    return {str(round_id): {q.id: (q.options[code] if (code := int(sample.answers[row, r, i])) >= 0
                                   else None) for i, q in enumerate(experiment.questions)}
            for r, round_id in enumerate(experiment.rounds)}


def _contradicted(sample: Sample, inputs: RunInputs) -> list[list[int]]:
    """Per participant, the rounds whose action contradicts the belief (coherence rules)."""
    rules = list(inputs.experiment.coherence)
    if not rules:
        return [[] for _ in range(sample.n)]
    contra, _ = contradictions(sample, inputs.experiment, rules)
    rounds = np.asarray(inputs.experiment.rounds)
    return [[int(r) for r in rounds[contra[p]]] for p in range(sample.n)]


def _questions(inputs: RunInputs) -> dict[str, Any]:
    """Question id -> text, kind and options (id, label, text), from the resolved scenario."""
    stages: list[ResolvedStage] = inputs.manifest["scenario"]["resolved"].get("stages") or []
    return {q["id"]: {"text": q.get("text", ""), "kind": stage.get("kind"),
                      "options": [{"id": o["id"], "label": o.get("label") or "",
                                   "text": o.get("text", "")} for o in q.get("options", [])]}
            for stage in stages for q in stage.get("questions", [])}


def browser_data(inputs: RunInputs) -> dict[str, Any]:
    """The transcript browser's data: participants, their policies' transcripts, twins' answers."""
    experiment = inputs.experiment
    attributes = experiment.attributes
    people: dict[str, dict[str, Any]] = {}
    for sample in inputs.policies:
        flags = _contradicted(sample, inputs)
        for row, pid in enumerate(sample.participant_ids):
            person = people.setdefault(str(pid), {"id": str(pid), "attrs": {}, "human": None,
                                                  "runs": {}})
            record = sample.attributes.iloc[row] if len(sample.attributes) else {}
            for name in attributes:
                if name in sample.attributes.columns and person["attrs"].get(name) is None:
                    person["attrs"][name] = _label(record[name])
            person["runs"][sample.name] = {"contradicted": flags[row],
                                           "answers": _answers(sample, row, inputs),
                                           "messages": []}
    human = inputs.human
    for row, pid in enumerate(human.participant_ids):
        if str(pid) in people:
            people[str(pid)]["human"] = _answers(human, row, inputs)
    strings, roles = StringTable(), StringTable()
    for role in ROLES:
        roles.index(role)
    for line in _transcript_lines(inputs.run_dir):
        run = people.get(str(line["participant_id"]), {}).get("runs", {}).get(str(line["policy"]))
        if run is not None:
            run["messages"].append((line.get("seq", 0), _message(line, strings, roles)))
    for person in people.values():
        for run in person["runs"].values():
            run["messages"] = [m for _, m in sorted(run["messages"], key=lambda s: s[0])]
    return {"strings": strings.strings, "roles": roles.strings,
            "policies": [s.name for s in inputs.policies],
            "conditions": [f.name for f in experiment.factors],
            "subgroups": [d for d in experiment.demographics],
            "rounds": list(experiment.rounds), "questions": _questions(inputs),
            "has_twins": any(p["human"] is not None for p in people.values()),
            "participants": sorted(people.values(), key=lambda p: p["id"])}


def gather(run_dir: Path, human: Path | None) -> Gathered:
    """Read report.json, the run and its transcripts."""
    report = read_report(run_dir)
    inputs = read_run(run_dir, human)
    return Gathered(report, inputs, browser_data(inputs))
