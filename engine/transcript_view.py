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


OPTION_MASS = ("option mass: the share of the model's next-token probability that fell on the "
               "option labels (A, B, ...) before p was renormalised over them; a small mass means "
               "the model mostly wanted to write something else")
MEMORY_HEADER = "What happened in earlier rounds:"  # agents/conversation.py memory_text


def _chosen(lines: list[dict[str, Any]], policy: str | None, round_id: int | None,
            where: str) -> list[dict[str, Any]]:
    """The lines of one policy and/or one round; an unknown one is an input error."""
    for flag, key, value in (("--policy", "policy", policy), ("--round", "round", round_id)):
        if value is None:
            continue
        known = sorted({line[key] for line in lines if line[key] is not None})
        if value not in known:
            raise InputError([Problem(where, None, flag, f"no {key} {shown(str(value))} for this "
                                      f"participant; it has: {', '.join(map(str, known))}")])
        lines = [line for line in lines if line[key] == value]
    return lines


def memory_block(system: dict[str, Any]) -> str:
    """The memory of earlier rounds inside a round's system message, as the model reads it."""
    content, parts = system["content"], system["parts"]
    if not parts.get("memory_rounds"):
        return ""
    start = content.find(MEMORY_HEADER)
    if start >= 0:
        end = content.find("\n\n", start)
        return content[start:end if end >= 0 else len(content)]
    rest = content.replace(parts["stimulus"], "")  # another wording: all but persona, stimulus
    for paragraph in parts["persona"].split("\n\n"):
        rest = rest.replace(paragraph, "")
    return rest.strip()


def render_transcript(run_dir: Path, participant_id: str, console: Console,
                      policy: str | None = None, round_id: int | None = None) -> None:
    """Persona, then each round's stimulus and memory, questions, option probabilities, answers
    and the human twin's recorded answer; only `policy`'s or `round_id`'s when given."""
    from engine.twin_answers import twin_answers

    everything = read_transcript(run_dir, participant_id)
    lines = _chosen(everything, policy, round_id, str(run_dir / TRANSCRIPTS))
    manifest = read_header(run_dir)
    console.print(_text(f"participant {participant_id} · run {manifest.run_id or run_dir.name} · "
                        f"model {manifest.model.name} · seed {manifest.seed}", "bold"))
    if manifest.model.builtin_not_pretrained:
        console.print(Text("builtin:tiny is not a pretrained language model: its answers are "
                           "noise from random weights.", style="yellow"))
    twin = twin_answers(read_manifest(run_dir) or {}, participant_id,
                        sorted({line["round"] for line in lines if line["round"] is not None}))
    who = "stand-in twin" if _standin(run_dir) else "human twin"
    console.print(_text(f"{who}: data row {twin.row}" + (
        " of the SYNTHETIC STAND-IN reference (not human data)" if who != "human twin" else "")
        if twin.why_not is None else f"{who}'s answers not shown: {twin.why_not}", "dim"))
    console.print(_text(OPTION_MASS, "dim"))
    persona_shown: set[str] = set()
    several = len({line["policy"] for line in everything}) > 1
    pending_question: dict[str, Any] | None = None
    for line in lines:
        policy_name = line["policy"]
        if line["role"] == "system":
            if policy_name not in persona_shown:
                if several:  # each policy's transcript of this twin, one after the other
                    console.rule(_text(f"policy {policy_name}", "bold magenta"))
                shown_as = "" if line["parts"]["demographics_shown"] else " (without demographics)"
                console.print(Panel(_text(line["parts"]["persona"]), title=f"persona{shown_as}",
                                    title_align="left"))
                persona_shown.add(policy_name)
            memory = memory_block(line)
            if memory:
                console.print(Panel(_text(memory), title=_text(
                    f"round {line['round']} · memory the model reads"), title_align="left",
                    border_style="blue"))
            if line["parts"]["stimulus"]:  # a one-shot survey has none
                console.print(Panel(_text(line["parts"]["stimulus"]),
                                    title=_text(f"round {line['round']} · stimulus"),
                                    title_align="left", border_style="cyan"))
        elif line["role"] == "user":
            pending_question = line
        elif line["role"] == "assistant":
            human = twin.option(line["round"], line["question_id"])
            console.print(_answer_panel(pending_question, line, human, who))


def _standin(run_dir: Path) -> bool:
    manifest = read_manifest(run_dir) or {}
    note = str((manifest.get("human_data") or {}).get("note") or "")
    return "SYNTHETIC STAND-IN" in note + str(manifest.get("reference_note") or "")


def _bar(p: float) -> str:
    """A bar of up to 30 blocks; a damaged probability (NaN, 1e12) draws none or a full one."""
    return "█" * round(min(max(p, 0.0), 1.0) * 30) if math.isfinite(p) else ""


def _answer_panel(question: dict[str, Any] | None, answer: dict[str, Any],
                  human: str | None = None, who: str = "human twin") -> Panel:
    asked = _text(question["content"] if question else "")
    where = f"round {answer['round']} · {answer['stage']} · {answer['question_id']}"
    twin = _text(f"{who} answered: {human}" if human is not None
                 else f"{who}: no recorded answer", "magenta")
    if answer.get("invalid") is not None:  # the backend's answer could not be read
        body = Group(asked, _text(f"no answer: the model's reply could not be read "
                                  f"({answer['invalid']})", "bold red"), twin)
        return Panel(body, title=_text(f"{where} · INVALID"), title_align="left",
                     border_style="red")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("option")
    table.add_column("p", justify="right")
    table.add_column("")
    for option, p in zip(answer["options"], answer["probs"], strict=True):
        chosen = option == answer["answer"]
        marks = (" ← answer" if chosen else "") + (f" ← {who}" if option == human else "")
        table.add_row(_text(option, "bold green" if chosen else ""), f"{p:.3f}",
                      Text(_bar(p) + marks))
    mass = answer["option_mass"]
    body = Group(asked, table,
                 _text(f"answered {answer['content']!r} ({answer['answer']}); option mass "
                       f"{mass:.3g} ({mass * 100:.2g}% of the next-token probability was on the option "
                       "labels)", "dim"), twin)
    return Panel(body, title=_text(where), title_align="left")
