"""Print a preview (engine/preview.py) with rich: a header saying whose round it is and where
the conversation's earlier answers come from, then every query's messages, options and labels.
Every text is printed through `printable` (a scenario's text is never terminal markup)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.preview import Preview, PreviewQuery, memory_source
from scenarios.errors import printable

ROLE_STYLE = {"system": "cyan", "user": "green", "assistant": "magenta"}


def _text(value: object, style: str = "") -> Text:
    return Text(printable(str(value)), style=style)


def _header(preview: Preview, tokens: tuple[str, list[int]] | None) -> Table:
    spec, policy = preview.spec, preview.policy
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("participant", _text(spec.participant_id))
    table.add_row("population", _text(preview.population))
    if spec.data_row is not None:
        table.add_row("data row", _text(spec.data_row))
    table.add_row("demographics", _text(", ".join(f"{k}={v}" for k, v in spec.demographics.items())
                                        or "(none)"))
    if spec.condition:
        table.add_row("condition", _text(", ".join(f"{k}={v}" for k, v in spec.condition.items())))
    shown = "shown" if policy.demographics else "NOT shown in the persona"
    table.add_row("policy", _text(f"{policy.name} (demographics {shown})"))
    table.add_row("round", _text(preview.round_id))
    table.add_row("earlier answers", _text(memory_source(preview)))
    for r in preview.remembered:
        table.add_row("", _text(f"round {r.round_id} {r.question_id} = {r.option_id}: {r.source}"))
    if preview.neighbours:
        table.add_row("neighbours", _text(preview.neighbours))
    if tokens is not None:
        model, counts = tokens
        table.add_row("tokens", _text(f"{model}: {sum(counts):,} prompt tokens in "
                                      f"{len(counts)} queries (tokenizer and chat template only)"))
    return table


def _query(console: Console, query: PreviewQuery, count: int | None,
           previous_system: str | None) -> None:
    """One query: a rule naming it, each message as sent (never re-wrapped: a line break shown
    is one the model reads), the labels scored and the options behind them."""
    console.rule(printable(f"round {query.round_id} · stage {query.stage.id} ({query.stage.kind})"
                           f" · question {query.question.id}"), align="left")
    tokens = f"; {count:,} prompt tokens" if count is not None else ""
    console.print(_text(f"{len(query.messages)} messages{tokens}", "dim"))
    for message in query.messages:
        console.print(_text(f"[{message.role}]", f"bold {ROLE_STYLE.get(message.role, '')}"))
        if message.role == "system" and message.content == previous_system:
            console.print(_text("(the same system message as the query above)", "dim"))
        else:
            console.print(_text(message.content), soft_wrap=True)
    console.print(_text(f"labels scored: {', '.join(query.labels)}", "bold"))
    options = Table("label", "option id", "text", box=None, padding=(0, 1))
    for option in query.question.options or []:
        options.add_row(_text(option.label or ""), _text(option.id), _text(option.text))
    console.print(options)


def print_preview(preview: Preview, console: Console,
                  tokens: tuple[str, list[int]] | None = None) -> None:
    """The header, then each query of the round in the order a run sends them."""
    console.print(_header(preview, tokens))
    previous: str | None = None
    for i, query in enumerate(preview.queries):
        count = tokens[1][i] if tokens is not None else None
        _query(console, query, count, previous)
        previous = query.messages[0].content if query.messages else None
