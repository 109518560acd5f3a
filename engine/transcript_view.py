"""Render one participant's transcript from a run directory with rich (text is never markup).

A run directory may come from someone else: every line and the manifest are checked before
anything is shown (a damaged file is an input error naming the file, line and field), and every
value is printed through `printable`, so escape sequences in the data cannot drive the terminal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from contracts.run_format import MANIFEST, TRANSCRIPTS
from engine.store import read_manifest
from scenarios.errors import InputError, Problem, printable, shown


class _Record(BaseModel):
    """Fields `show` reads; other fields are kept but not checked."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Owner(_Record):
    """What every transcript line needs so `show` can pick one participant's lines."""

    participant_id: str


class _Parts(_Record):
    persona: str
    stimulus: str
    demographics_shown: bool = True


class TranscriptLine(_Owner):
    """One transcript line of the participant shown."""

    policy: str
    seq: int
    round: int | None = None
    stage: str | None = None
    question_id: str | None = None
    role: Literal["system", "user", "assistant"]
    content: str
    parts: _Parts | None = None
    options: list[str] | None = None
    probs: list[float] | None = None
    answer: str | None = None
    option_mass: float | None = None
    invalid: str | None = None

    @model_validator(mode="after")
    def _role_needs(self) -> TranscriptLine:
        if self.role == "system" and self.parts is None:
            raise ValueError("a system line needs 'parts' (persona and stimulus)")
        if self.role == "assistant" and self.invalid is None:
            if self.options is None or self.probs is None or self.option_mass is None:
                raise ValueError("an answer line needs 'options', 'probs' and 'option_mass'")
            if len(self.options) != len(self.probs):
                raise ValueError(f"{len(self.options)} options but {len(self.probs)} probs")
        return self


class _Model(_Record):
    name: str
    builtin_not_pretrained: bool = False


class ManifestHeader(_Record):
    """The manifest fields `show` prints."""

    run_id: str | None = None
    model: _Model
    seed: int


def _problems(exc: ValidationError, file: str, line: int | None) -> InputError:
    """A pydantic error as problems naming the file, the line and each bad field."""
    return InputError([Problem(file, line, ".".join(map(str, e["loc"])) or "(line)", e["msg"])
                       for e in exc.errors()])


def read_transcript(run_dir: Path, participant_id: str) -> list[dict[str, Any]]:
    """The participant's transcript lines, in order (each checked to have what `show` prints)."""
    path = run_dir / TRANSCRIPTS
    if not path.is_file():
        raise InputError([Problem(str(run_dir), None, "", "not a run directory "
                                  f"(no {TRANSCRIPTS}); give the folder `run` printed")])
    lines: list[TranscriptLine] = []
    known: list[str] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    data = json.loads(raw)
                    if not isinstance(data, dict):
                        raise InputError([Problem(str(path), number, "", "expected a JSON object "
                                                  f"(one transcript record), got {shown(raw.strip())}")])
                    owner = _Owner.model_validate(data).participant_id
                    if owner == participant_id:
                        lines.append(TranscriptLine.model_validate(data))
                except json.JSONDecodeError:
                    raise InputError([Problem(str(path), number, "", "not a JSON line")]) from None
                except ValidationError as exc:
                    raise _problems(exc, str(path), number) from None
                if owner != participant_id and len(known) < 5 and owner not in known:
                    known.append(owner)
    except UnicodeDecodeError as exc:
        raise InputError([Problem(str(path), None, "", f"not UTF-8 text ({exc.reason})")]) from None
    if not lines:
        raise InputError([Problem(str(path), None, "--participant",
                                  f"no participant '{participant_id}' in this run; ids look like: "
                                  + ", ".join(known))])
    return [line.model_dump() for line in sorted(lines, key=lambda line: (line.policy, line.seq))]


def read_header(run_dir: Path) -> ManifestHeader:
    """The manifest fields `show` prints, checked."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise InputError([Problem(str(run_dir), None, "", f"not a run directory (no {MANIFEST})")])
    try:
        return ManifestHeader.model_validate(manifest)
    except ValidationError as exc:
        raise _problems(exc, str(run_dir / MANIFEST), None) from None


def _text(value: object, style: str = "") -> Text:
    """A value from the run directory as plain text with its control characters escaped."""
    return Text(printable(str(value)), style=style)


def render_transcript(run_dir: Path, participant_id: str, console: Console) -> None:
    """Persona, then each round's stimulus, questions, option probabilities and answers."""
    lines = read_transcript(run_dir, participant_id)
    manifest = read_header(run_dir)
    console.print(_text(f"participant {participant_id} · run {manifest.run_id or run_dir.name} · "
                        f"model {manifest.model.name} · seed {manifest.seed}", "bold"))
    if manifest.model.builtin_not_pretrained:
        console.print(Text("builtin:tiny is not a pretrained language model: its answers are "
                           "noise from random weights.", style="yellow"))
    persona_shown: set[str] = set()
    several = len({line["policy"] for line in lines}) > 1
    pending_question: dict[str, Any] | None = None
    for line in lines:
        policy = line["policy"]
        if line["role"] == "system":
            if policy not in persona_shown:
                if several:  # each policy's transcript of this twin, one after the other
                    console.rule(_text(f"policy {policy}", "bold magenta"))
                shown = "" if line["parts"]["demographics_shown"] else " (without demographics)"
                console.print(Panel(_text(line["parts"]["persona"]), title=f"persona{shown}",
                                    title_align="left"))
                persona_shown.add(policy)
            console.print(Panel(_text(line["parts"]["stimulus"]),
                                title=_text(f"round {line['round']} · stimulus"),
                                title_align="left", border_style="cyan"))
        elif line["role"] == "user":
            pending_question = line
        elif line["role"] == "assistant":
            console.print(_answer_panel(pending_question, line))


def _bar(p: float) -> str:
    """A bar of up to 30 blocks; a damaged probability (NaN, 1e12) draws none or a full one."""
    return "█" * round(min(max(p, 0.0), 1.0) * 30) if math.isfinite(p) else ""


def _answer_panel(question: dict[str, Any] | None, answer: dict[str, Any]) -> Panel:
    asked = _text(question["content"] if question else "")
    where = f"round {answer['round']} · {answer['stage']} · {answer['question_id']}"
    if answer.get("invalid") is not None:  # the backend's answer could not be read
        body = Group(asked, _text(f"no answer: the model's reply could not be read "
                                  f"({answer['invalid']})", "bold red"))
        return Panel(body, title=_text(f"{where} · INVALID"), title_align="left",
                     border_style="red")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("option")
    table.add_column("p", justify="right")
    table.add_column("")
    for option, p in zip(answer["options"], answer["probs"], strict=True):
        chosen = option == answer["answer"]
        table.add_row(_text(option, "bold green" if chosen else ""), f"{p:.3f}",
                      Text(_bar(p) + (" ← answer" if chosen else "")))
    body = Group(asked, table,
                 _text(f"answered {answer['content']!r} ({answer['answer']}); option mass "
                       f"{answer['option_mass']:.3g}", "dim"))
    return Panel(body, title=_text(where), title_align="left")
