"""The prompt a model reads: chat template rendered exactly as the transformers backend renders it.

Every backend that scores option labels must see the same token ids, or their distributions
differ. The vLLM and OpenAI-compatible backends render locally with this class and send token
ids, so the server adds no second BOS token and applies no template of its own.
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
        """The single token an option label is answered with."""
        if label not in self._label_ids:
            ids = self.tokenizer.encode(label, add_special_tokens=False)
            if len(ids) != 1:
                raise InputError([Problem(str(self.model_dir), None, "options.label",
                                          f"option label {label!r} is {len(ids)} tokens for this "
                                          "tokenizer; labels must be single tokens")])
            self._label_ids[label] = ids[0]
        return self._label_ids[label]

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        """Token ids of a question's option labels, in order."""
        return [self.label_id(label) for label in labels]
