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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from scenarios.errors import InputError, Problem


class ChatPrompt:
    """A model directory's tokenizer and chat template, rendering conversations to token ids."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise InputError([Problem(str(self.model_dir), None, "model",
                                      "not a directory with a tokenizer and chat template")])
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._label_ids: dict[str, int] = {}
        self.label_prefix = self._label_prefix()

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

    def text(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads, ending where the answer begins."""
        return self.tokenizer.apply_chat_template(
            [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True)

    def ids(self, messages: Sequence[Any]) -> list[int]:
        """The prompt's token ids; the template already holds any BOS token."""
        return self.tokenizer.encode(self.text(messages), add_special_tokens=False)

    def ids_many(self, conversations: Sequence[Sequence[Any]]) -> list[list[int]]:
        """Token ids of many prompts in one tokenizer call (the fast tokenizer's batch path)."""
        if not conversations:
            return []
        texts = [self.text(messages) for messages in conversations]
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

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
