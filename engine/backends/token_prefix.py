"""A prompt's token ids from its first turn tokenized once and its rest, exactly as if whole.

A participant's questions of one round all start with the same system turn (about three
quarters of the prompt in the flagship), and tokenizing is most of the front end's cost, so the
system turn's ids are remembered and only the rest of each prompt is tokenized.

Why the ids are exactly those of the whole text: a Hugging Face fast tokenizer first cuts the
text at its added tokens (leftmost-longest match), then normalizes, pre-tokenizes and encodes
each piece between them on its own. A cut right after a special added token T is therefore a
cut the tokenizer makes itself, and the two halves tokenize to the whole's ids, when
  - T is matched there in the whole text: no other added token contains T or has a proper
    suffix that is a prefix of T (so no match starting earlier covers T, and none longer starts
    at T), and T is not `single_word` (whose match depends on the next character);
  - T eats no neighbouring whitespace (`lstrip`/`rstrip` off) and is matched on the raw text
    (`normalized` off);
  - no step treats a piece by its position: no normalizer, and pre-tokenizers that split by
    pattern only (ByteLevel without `add_prefix_space`, Split, Digits, Punctuation,
    Whitespace); Metaspace with `prepend_scheme: first` would add a space to the rest.
`boundary_tokens` checks all of this on the tokenizer's own description; any tokenizer outside
it (or failing the probe in `PrefixIds.__init__`) is tokenized whole, as before. The prefix is
keyed by its text, so a cut found at an unexpected place is still exact, only less useful.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

PREFIX_MEMO = 4096  # remembered first turns (least recently used dropped): a participant-round each
PROBED = 32  # boundary tokens probed when a tokenizer is loaded
POSITION_FREE = frozenset({"Split", "Digits", "Punctuation", "Whitespace", "WhitespaceSplit"})


def boundary_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The special tokens after which this tokenizer's text may be cut exactly (see above);
    () when its pipeline is not one where that is shown."""
    try:
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
    except Exception:  # a slow (Python) tokenizer: no description to check
        return ()
    if spec.get("normalizer") is not None or not _position_free(spec.get("pre_tokenizer")):
        return ()
    added = spec.get("added_tokens") or []
    contents = [str(a.get("content", "")) for a in added]
    safe = []
    for a in added:
        token = str(a.get("content", ""))
        if (not token or not a.get("special") or a.get("normalized") or a.get("lstrip")
                or a.get("rstrip") or a.get("single_word")):
            continue
        if not any(_covers(other, token) for other in contents if other != token):
            safe.append(token)
    return tuple(sorted(safe, key=len, reverse=True))


def _position_free(pre: dict[str, Any] | None) -> bool:
    if pre is None:
        return True
    kind = pre.get("type")
    if kind == "Sequence":
        return all(_position_free(p) for p in pre.get("pretokenizers") or [])
    if kind == "ByteLevel":
        return not pre.get("add_prefix_space", False)
    return kind in POSITION_FREE


def _covers(other: str, token: str) -> bool:
    """Whether a match of `other` could take in the start of an occurrence of `token`."""
    return token in other or any(token.startswith(other[-k:]) for k in range(1, len(other)))


class PrefixIds:
    """Token ids of prompts, the first turn's ids remembered across calls (bounded LRU)."""

    def __init__(self, tokenizer: Any, size: int = PREFIX_MEMO) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.memo: OrderedDict[str, list[int]] = OrderedDict()
        self.lock = threading.Lock()  # a backend may tokenize from a worker thread
        self.reused = 0  # prompts whose first turn came from the memo
        self.tokens = boundary_tokens(tokenizer)
        self._cut = re.compile("|".join(map(re.escape, self.tokens))) if self.tokens else None
        if self._cut is not None and not self._probe_agrees():
            self._cut = None

    @property
    def active(self) -> bool:
        """Whether prompts are tokenized in two pieces (False: whole, as before)."""
        return self._cut is not None

    def cut(self, text: str, first: str | None) -> int | None:
        """Where the text may be cut: right after the first boundary token that follows the
        first turn's content (None: tokenize it whole)."""
        if self._cut is None or not first:
            return None
        start = text.find(first)
        found = self._cut.search(text, start + len(first)) if start >= 0 else None
        return None if found is None else found.end()

    def ids(self, text: str, first: str | None) -> list[int]:
        """One prompt's ids (`first`: its first message's content)."""
        at = self.cut(text, first)
        if at is None:
            return self._encode_one(text)
        head = self._remembered(text[:at])
        if head is None:
            head = self._remember(text[:at], self._encode_one(text[:at]))
        return head + self._encode_one(text[at:])

    def head_length(self, text: str, first: str | None) -> int | None:
        """How many of the prompt's ids its first turn holds (None: it is tokenized whole)."""
        at = self.cut(text, first)
        if at is None:
            return None
        with self.lock:
            head = self.memo.get(text[:at])
        return len(head if head is not None else self._encode_one(text[:at]))

    def ids_many(self, texts: Sequence[str], firsts: Sequence[str | None]) -> list[list[int]]:
        """Many prompts' ids in one tokenizer call: the rests, and first turns not remembered."""
        pieces: list[str] = []
        index: dict[str, int] = {}  # a first turn tokenized in this call, by text
        plan: list[tuple[str | None, list[int] | None, int]] = []
        for text, first in zip(texts, firsts, strict=True):
            at = self.cut(text, first)
            if at is None:
                plan.append((None, None, len(pieces)))
                pieces.append(text)
                continue
            head_text = text[:at]
            head = self._remembered(head_text)
            if head is None and head_text not in index:
                index[head_text] = len(pieces)
                pieces.append(head_text)
            plan.append((head_text, head, len(pieces)))
            pieces.append(text[at:])
        encoded = self._encode(pieces) if pieces else []
        for head_text, i in index.items():
            self._remember(head_text, encoded[i])
        out = []
        for head_text, head, i in plan:
            if head_text is None:
                out.append(list(encoded[i]))
            else:
                out.append((head if head is not None else encoded[index[head_text]]) + encoded[i])
        return out

    def _encode_one(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _remembered(self, head: str) -> list[int] | None:
        with self.lock:
            ids = self.memo.get(head)
            if ids is not None:
                self.memo.move_to_end(head)
                self.reused += 1
            return ids

    def _remember(self, head: str, ids: list[int]) -> list[int]:
        kept = list(ids)
        with self.lock:
            self.memo[head] = kept
            if len(self.memo) > self.size:
                self.memo.popitem(last=False)
        return kept

    def _probe_agrees(self) -> bool:
        """A last check on this tokenizer: cut texts with spaces, newlines and non-ASCII at the
        cut give the whole text's ids (the argument above says they must)."""
        for token in self.tokens[:PROBED]:
            for tail in ("\n x", " \n\ny", "ü  \t z", "x"):
                text = f"a b{token}{tail}{token}\n"
                at = text.index(token) + len(token)
                pieces = self._encode([text, text[:at], text[at:]])
                if pieces[0] != pieces[1] + pieces[2] or self._encode_one(text) != pieces[0]:
                    return False
        return True
