"""Render one participant's transcript from a run directory with rich (text is never markup)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.store import MANIFEST, TRANSCRIPTS
from scenarios.errors import InputError, Problem


def read_transcript(run_dir: Path, participant_id: str) -> list[dict[str, Any]]:
    """The participant's transcript lines, in order."""
    path = run_dir / TRANSCRIPTS
    if not path.is_file():
        raise InputError([Problem(str(run_dir), None, "", "not a run directory "
                                  f"(no {TRANSCRIPTS}); give the folder `run` printed")])
    lines, known = [], []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                raise InputError([Problem(str(path), number, "", "not a JSON line")]) from None
            if line["participant_id"] == participant_id:
                lines.append(line)
            elif len(known) < 5 and line["participant_id"] not in known:
                known.append(line["participant_id"])
    if not lines:
        raise InputError([Problem(str(path), None, "--participant",
                                  f"no participant '{participant_id}' in this run; ids look like: "
                                  + ", ".join(known))])
    return sorted(lines, key=lambda line: (line["policy"], line["seq"]))


def render_transcript(run_dir: Path, participant_id: str, console: Console) -> None:
    """Persona, then each round's stimulus, questions, option probabilities and answers."""
    lines = read_transcript(run_dir, participant_id)
    manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    header = Text(f"participant {participant_id} · run {manifest.get('run_id', run_dir.name)} · "
                  f"model {manifest['model']['name']} · seed {manifest['seed']}", style="bold")
    console.print(header)
    if manifest["model"].get("builtin_not_pretrained"):
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
                    console.rule(Text(f"policy {policy}", style="bold magenta"))
                shown = "" if line["parts"].get("demographics_shown", True) else \
                    " (without demographics)"
                console.print(Panel(Text(line["parts"]["persona"]), title=f"persona{shown}",
                                    title_align="left"))
                persona_shown.add(policy)
            console.print(Panel(Text(line["parts"]["stimulus"]),
                                title=f"round {line['round']} · stimulus", title_align="left",
                                border_style="cyan"))
        elif line["role"] == "user":
            pending_question = line
        elif line["role"] == "assistant":
            console.print(_answer_panel(pending_question, line))


def _answer_panel(question: dict[str, Any] | None, answer: dict[str, Any]) -> Panel:
    if answer.get("invalid") is not None:  # the backend's answer could not be read
        body = Group(Text(question["content"] if question else ""),
                     Text(f"no answer: the model's reply could not be read ({answer['invalid']})",
                          style="bold red"))
        return Panel(body, title=f"round {answer['round']} · {answer['stage']} · "
                     f"{answer['question_id']} · INVALID", title_align="left", border_style="red")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("option")
    table.add_column("p", justify="right")
    table.add_column("")
    for option, p in zip(answer["options"], answer["probs"], strict=True):
        chosen = option == answer["answer"]
        table.add_row(Text(option, style="bold green" if chosen else ""), f"{p:.3f}",
                      Text("█" * round(p * 30) + (" ← answer" if chosen else "")))
    body = Group(Text(question["content"] if question else ""), table,
                 Text(f"answered {answer['content']!r} ({answer['answer']}); option mass "
                      f"{answer['option_mass']:.3g}", style="dim"))
    return Panel(body, title=f"round {answer['round']} · {answer['stage']} · "
                 f"{answer['question_id']}", title_align="left")
