"""The prompt a model reads: chat template rendered exactly as the transformers backend renders it.

Every backend that scores option labels must see the same token ids, or their distributions
differ. The vLLM and OpenAI-compatible backends render locally with this class and send token
ids, so the server adds no second BOS token and applies no template of its own.

Option labels: the answer's first token is the label as the model would write it right after
the prompt. A prompt that ends in whitespace (ChatML's "<|im_start|>assistant\n", builtin:tiny's
"<|assistant|>\n", or a custom template's "Answer: ") is answered with the bare label ("A",
SmolLM2 id 49); one that ends in a word or punctuation ("Answer:") with the space-prefixed
label (" A", id 330), as a byte-level BPE tokenizer writes a word after a word. Only that one
token is scored: it is the token finetuning trains, so scoring and training agree. Measured
on SmolLM2-135M-Instruct after "assistant\n", the other form holds about 1e-4 of the next-token
mass against 0.5-0.7 on the bare labels, so leaving it out moves an answer's probabilities by
about 1e-4 at most.

One query's prompt is wanted twice, for its response-cache key and by the backend: inside
`remembering()` (one batch) each conversation's template is applied once and its text reused.
A participant's questions of a round share their system turn: its token ids are computed once
(engine/backends/token_prefix.py, which says why the ids are exactly those of the whole text).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backends.token_prefix import PrefixIds
from scenarios.errors import InputError, Problem

if TYPE_CHECKING:
    from engine.backends.base import Backend


class ChatPrompt:
    """A model directory's tokenizer and chat template, rendering conversations to token ids."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise InputError([Problem(str(self.model_dir), None, "model",
                                      "not a directory with a tokenizer and chat template")])
        from transformers import AutoTokenizer  # here: importing this module stays light
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # rich draws the only progress bar
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._label_ids: dict[str, int] = {}
        self.label_prefix = self._label_prefix()
        self._texts: dict[tuple[Any, ...], str] | None = None  # set inside remembering()
        self.applied = 0  # times the chat template was applied to a conversation
        self.prefixes = PrefixIds(self.tokenizer)
        self.generation_ids = self._generation_ids()

    def _label_prefix(self) -> str:
        """'' when the template's answer position follows whitespace, else ' ' (see above).

        The generation prompt ends the same way whatever the conversation, so one probe decides.
        """
        probe = [{"role": "system", "content": "x"}, {"role": "user", "content": "x"}]
        try:
            text = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that refuses the probe: labels as the tokenizer spells them
            return ""
        return "" if not text or text[-1].isspace() else " "

    def _generation_ids(self) -> tuple[int, ...]:
        """The generation prompt's ids, as they end a prompt (ChatML: "<|im_start|>assistant\\n");
        () when the template's generation prompt is not a suffix that tokenizes on its own."""
        probe = [{"role": "user", "content": "x"}]
        try:
            bare, asking = (self.tokenizer.apply_chat_template(
                probe, tokenize=False, add_generation_prompt=add) for add in (False, True))
        except Exception:  # a template that refuses the probe: no cuts at generation prompts
            return ()
        if not asking.startswith(bare) or asking == bare:
            return ()
        ids = self.tokenizer.encode(asking[len(bare):], add_special_tokens=False)
        whole = self.tokenizer.encode(asking, add_special_tokens=False)
        return tuple(ids) if ids and whole[-len(ids):] == ids else ()

    def cuts(self, messages: Sequence[Any], ids: Sequence[int]) -> tuple[int, ...]:
        """Where the prompt's pieces end for prefix reuse (engine/backends/segments.py): right
        after its first turn, right after each generation prompt (where an earlier answer
        began), and at its end; ascending. A function of the prompt's messages alone."""
        found = {len(ids)}
        head = self.prefixes.head_length(self.text(messages), _first_content(messages))
        if head:
            found.add(head)
        marker = self.generation_ids
        if marker:
            first, width = marker[0], len(marker)
            found.update(i + width for i, token in enumerate(ids)
                         if token == first and tuple(ids[i:i + width]) == marker)
        return tuple(sorted(c for c in found if 0 < c <= len(ids)))

    @contextmanager
    def remembering(self) -> Iterator[None]:
        """Inside the block, each distinct conversation's text is rendered once (the cache key
        and the backend then read the same string); outside, nothing is kept. Nested blocks
        share the outermost's texts, so memory is bounded by one batch."""
        if self._texts is not None:
            yield
            return
        self._texts = {}
        try:
            yield
        finally:
            self._texts = None

    def text(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads, ending where the answer begins."""
        texts = self._texts
        if texts is None:
            return self._apply(messages)
        key = tuple(messages)  # Messages are frozen dataclasses: hashable by content
        text = texts.get(key)
        if text is None:
            text = texts[key] = self._apply(messages)
        return text

    def _apply(self, messages: Sequence[Any]) -> str:
        self.applied += 1
        return self.tokenizer.apply_chat_template(
            [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True)

    def ids(self, messages: Sequence[Any]) -> list[int]:
        """The prompt's token ids; the template already holds any BOS token."""
        return self.prefixes.ids(self.text(messages), _first_content(messages))

    def ids_many(self, conversations: Sequence[Sequence[Any]]) -> list[list[int]]:
        """Token ids of many prompts in one tokenizer call (the fast tokenizer's batch path)."""
        if not conversations:
            return []
        texts = [self.text(messages) for messages in conversations]
        return self.prefixes.ids_many(texts, [_first_content(m) for m in conversations])

    def label_id(self, label: str) -> int:
        """The single token an option label is answered with, right after this template's prompt
        (the bare label, or the label after a space; see the module's docstring)."""
        if label not in self._label_ids:
            written = self.label_prefix + label
            ids = self.tokenizer.encode(written, add_special_tokens=False)
            if len(ids) != 1:
                raise InputError([Problem(str(self.model_dir), None, "options.label",
                                          f"option label {label!r} (answered as {written!r}) is "
                                          f"{len(ids)} tokens for this tokenizer; labels must be "
                                          "single tokens")])
            self._label_ids[label] = ids[0]
        return self._label_ids[label]

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        """Token ids of a question's option labels, in order."""
        return [self.label_id(label) for label in labels]


def _first_content(messages: Sequence[Any]) -> str | None:
    """The first message's content (the system turn a participant's questions share)."""
    return getattr(messages[0], "content", None) if messages else None


def prompts_remembered(backend: Backend) -> Any:
    """`remembering()` of the backend's ChatPrompt (through a cache wrapper too), or a no-op for a
    backend that renders no chat template here."""
    chat = backend.chat
    return chat.remembering() if chat is not None else nullcontext()
