"""The `/v1/completions` wire format for the openai backend: request bodies holding one prompt or
several, and the answers read back out of a response, prompt by prompt.

A request holds the prompts of queries that share every other field (model, labels, sampling).
With one prompt per request the prompt goes as itself (token ids or text); with several it goes
as a list of them, which the API accepts, and the response's choices carry each prompt's
position as `index`. An answer that cannot be read raises `Unreadable` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.backends.base import Distribution, options_from_logprobs

Prompt = list[int] | str


class Unreadable(Exception):
    """One answer that arrived but cannot be read."""


@dataclass(frozen=True)
class Job:
    """One query: its request fields but the prompt, how to render the prompt, how to read its
    choice, and what to answer when it stays unreadable."""

    fields: dict[str, Any]
    render: Callable[[], Prompt]
    read: Callable[[dict[str, Any]], Any]
    give_up: Callable[[str], Any]

    @property
    def payload(self) -> dict[str, Any]:
        """The request's JSON object when this query is sent alone."""
        return {**self.fields, "prompt": self.render()}


@dataclass
class Request:
    """Jobs sent together in one request; `render` fills in their prompts (once) and body."""

    jobs: list[Job]
    listed: bool  # prompts go as a list (several per request allowed), not as one prompt
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    prompts: list[Prompt] = field(default_factory=list)
    _bodies: dict[tuple[int, ...], bytes] = field(default_factory=dict)

    def render(self) -> None:
        self.prompts = [job.render() for job in self.jobs]
        self.body(tuple(range(len(self.jobs))))
        self.ready.set()

    def body(self, which: tuple[int, ...]) -> bytes:
        """The JSON body asking for the jobs at positions `which` (kept: a retry sends it again)."""
        if which not in self._bodies:
            prompts = [self.prompts[i] for i in which]
            prompt = prompts if self.listed else prompts[0]
            self._bodies[which] = json.dumps({**self.jobs[0].fields, "prompt": prompt},
                                             separators=(",", ":")).encode()
        return self._bodies[which]


def requests_of(jobs: Sequence[Job], prompts_per_request: int) -> list[tuple[list[int], Request]]:
    """The jobs grouped into requests (with each job's position): consecutive jobs with the same
    fields, at most `prompts_per_request` together, in the order they first appear."""
    if prompts_per_request == 1:
        return [([i], Request([job], listed=False)) for i, job in enumerate(jobs)]
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(json.dumps(job.fields, sort_keys=True), []).append(i)
    made = []
    for members in groups.values():
        for start in range(0, len(members), prompts_per_request):
            chunk = members[start:start + prompts_per_request]
            made.append((chunk, Request([jobs[i] for i in chunk], listed=True)))
    return sorted(made, key=lambda pair: pair[0][0])


async def render_ahead(requests: Sequence[Request]) -> None:
    """Render every request's prompts and body in order, one request per turn of the event loop.

    Rendering (tokenizing) costs more client CPU than the HTTP exchange. Done up front it would
    leave the server idle until the last prompt is rendered; done when a slot frees it would sit
    between a response and the next request, and the server, which answers the requests it holds
    in one batch, would see the next batch trickle in. One request per turn keeps rendering in
    the time the client waits anyway, ahead of the requests, with responses read in between.
    """
    for request in requests:
        request.render()
        await asyncio.sleep(0)


def choices(body: str, count: int) -> list[Any]:
    """The response's choices in prompt order: one per prompt asked for."""
    try:
        listed = json.loads(body)["choices"]
        first = listed[0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Unreadable("the response is not a completions JSON body with a choice") from None
    if count == 1:
        return [first]
    if not isinstance(listed, list) or len(listed) != count:
        raise Unreadable(f"the response holds {len(listed)} choices for {count} prompts")
    ordered: list[Any] = [None] * count
    for choice in listed:
        index = choice.get("index") if isinstance(choice, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or ordered[index] is not None:
            raise Unreadable("the response's choices are not numbered one per prompt")
        ordered[index] = choice
    return ordered


def _object(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise Unreadable("the response's choice is not an object")
    return choice


def read_choice(choice: Any, labels: Sequence[str], keys: Sequence[str]) -> Distribution:
    """The option distribution from the first generated token's logprobs."""
    try:
        top = _object(choice)["logprobs"]["top_logprobs"][0]
    except (KeyError, IndexError, TypeError):
        raise Unreadable("the response has no logprobs for the first token") from None
    if not isinstance(top, dict):
        raise Unreadable("the first token's top_logprobs is not an object")
    values = []
    for label, key in zip(labels, keys, strict=True):
        value = top.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise Unreadable(f"no logprob for option label {label!r} ({key!r})")
        values.append(float(value))
    return options_from_logprobs(np.array(values))


def read_text(choice: Any) -> str:
    """The choice's text, as the server decoded it."""
    text = _object(choice).get("text")
    if not isinstance(text, str):
        raise Unreadable("the response's choice has no text")
    return text


def read_token_text(choice: Any, decode: Callable[[list[int]], str]) -> str:
    """The choice's generated token ids, decoded here."""
    ids = _object(choice).get("token_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise Unreadable("the response's choice has no token_ids")
    return decode(ids)
