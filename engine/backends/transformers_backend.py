"""In-process transformers backend: batched, left-padded forward passes on CPU (or GPU).

Option scoring cuts prompts into pieces where conversations branch, computes each distinct piece
once and reads pieces computed in this call or a recent one (engine/backends/segments.py), on
CPU for models large enough for it to pay; `prefix_reuse=False` scores every prompt whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.backends.base import (
    Adapters,
    ChoiceQuery,
    Distribution,
    TextQuery,
    options_from_logprobs,
)
from engine.backends.chat_template import ChatPrompt
from engine.weights import adapter_identity, weights_digest
from scenarios.errors import InputError, Problem
from scenarios.schema import Dtype

if TYPE_CHECKING:  # torch loads with the model, not with this file (validating options is light)
    import torch

    from engine.backends.segments import SegmentScorer

# Padded tokens per forward pass. Measured on 2 CPU cores with builtin:tiny: ~8k-token batches
# run at 70-100k tokens/s, 25k-token batches fall to ~25k tokens/s (activations leave the cache).
TOKEN_BUDGET = 8_192
# Keys and values of computed prompt pieces kept for later calls, in MiB (a chunk being computed
# and one pass come on top, at most half of this each). What is kept changes speed only, never a
# bit of an answer (see segments).
# SmolLM2-135M holds 46 KB per token in float32 (23 in bf16), builtin:tiny 2 KB.
PREFIX_CACHE_MB = 1024
# Prefix reuse pays when a token's forward pass costs more than copying and attending to its kept
# keys and values. Measured on 2 CPU cores (float32): SmolLM2-135M runs the flagship 2.10x as
# fast as the code before reuse (24 twins; 2.03x on 48). builtin:tiny (0.5M parameters) runs
# 1.18x as fast (100 twins), but its probabilities would move by float32 rounding (4e-6), so
# below this many parameters it stays off unless asked for; unset, it is on from here, on CPU
# (not measured on other devices).
PREFIX_REUSE_MIN_PARAMETERS = 50_000_000
# Pieces the memory budget cannot keep go to files in the temporary directory, within this many
# MiB (and at most half its disk's free space); a full 929-twin flagship run on SmolLM2 in
# float32 fills them from its third call on. Writing or reading a token's KV costs 0.04-0.13 ms
# here against about 1.7 ms to compute it again.
PREFIX_SPILL_MB = 16_384


class Options(BaseModel):
    """`backend: transformers`: a local model in this process (CPU by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Dtype = "float32"
    device: str = Field(default="cpu", min_length=1)
    token_budget: int = Field(default=TOKEN_BUDGET, ge=256, description="padded tokens per forward "
                              "pass")
    prefix_reuse: bool | None = Field(default=None, description="compute each shared prompt prefix "
                                      "once, in pieces cut where conversations branch (exact "
                                      "to float rounding; false: every prompt whole; unset: on "
                                      "for models of 50M parameters or more on CPU)")
    prefix_cache_mb: int = Field(default=PREFIX_CACHE_MB, ge=0, description="MiB of computed "
                                 "prompt pieces kept in memory for later calls (0: none in "
                                 "memory; with prefix_spill_mb=0 too, shared within a call "
                                 "only); changes speed, never an answer")
    prefix_spill_mb: int = Field(default=PREFIX_SPILL_MB, ge=0, description="MiB of computed "
                                 "prompt pieces kept in files under the temporary directory "
                                 "(TMPDIR) when prefix_cache_mb is full, at most half the "
                                 "disk's free space, removed when the run ends (0: none); "
                                 "changes speed, never an answer")


def build(model_dir: Path, adapters: Adapters, seed: int, options: Options) -> TransformersBackend:
    """The backend over `model_dir` serving `adapters`' policies (the seed changes no answer)."""
    return TransformersBackend(model_dir, adapters=adapters, dtype=options.dtype,
                               device=options.device, token_budget=options.token_budget,
                               prefix_reuse=options.prefix_reuse,
                               prefix_cache_mb=options.prefix_cache_mb,
                               prefix_spill_mb=options.prefix_spill_mb)


@dataclass
class PromptTokens:
    """Prompt tokens submitted for scoring, and how many of them the model computed."""

    prompt_submitted: int = 0
    prompt_computed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TransformersBackend:
    """A local Hugging Face causal LM; one call scores a whole batch of conversations.

    Several policies share the one base model: `adapters` maps a policy name to a peft LoRA
    adapter directory (None: the base weights alone). The policy `base` always exists.
    """

    kind = "transformers"

    def __init__(self, model_dir: str | Path, *, dtype: str = "float32", device: str = "cpu",
                 token_budget: int = TOKEN_BUDGET,
                 adapters: Mapping[str, Path | None] | None = None, prefix_reuse: bool | None = None,
                 prefix_cache_mb: int = PREFIX_CACHE_MB,
                 prefix_spill_mb: int = PREFIX_SPILL_MB) -> None:
        from transformers import AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InputError([Problem(str(self.model_dir), None, "model",
                                      "not a Hugging Face model directory (no config.json)")])
        self.chat = ChatPrompt(self.model_dir)  # the one rendering path all backends share
        self.tokenizer = self.chat.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch_dtype(dtype))
        self.model.to(device).eval()
        self.device, self.dtype, self.token_budget = device, dtype, token_budget
        self.policies: dict[str, Path | None] = {"base": None, **(adapters or {})}
        self._load_adapters()
        self.prompt_tokens = PromptTokens()
        self.prefix: SegmentScorer | None = None
        if prefix_reuse is None:
            prefix_reuse = (self.model.num_parameters() >= PREFIX_REUSE_MIN_PARAMETERS
                            and device == "cpu")
        if prefix_reuse and full_attention(self.model.config):
            from engine.backends.segments import SegmentScorer

            self.prefix = SegmentScorer(lambda: self.model, device=device,
                                        cache_bytes=prefix_cache_mb << 20,
                                        spill_bytes=prefix_spill_mb << 20,
                                        token_bytes=kv_bytes_per_token(self.model.config, dtype))

    def _load_adapters(self) -> None:
        """Wrap the base model once with every adapter, each under its policy's name."""
        named = [(name, path) for name, path in self.policies.items() if path is not None]
        if not named:
            return
        from peft import PeftModel

        for name, path in named:
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise InputError([Problem(str(path), None, f"policy {name}", "the adapter does not "
                                          f"load onto {self.model_dir}: {exc}")]) from None
        self.model.to(self.device).eval()

    def identity(self) -> dict[str, Any]:
        """Model directory, a hash of its weights, dtype, device and the adapters by policy."""
        adapters = {name: str(path) for name, path in self.policies.items() if path is not None}
        return {**self._model_identity(), **({"adapters": adapters} if adapters else {})}

    def _model_identity(self) -> dict[str, Any]:
        return {"backend": self.kind, "model_dir": str(self.model_dir),
                "weights_sha256": weights_digest(self.model_dir), "dtype": self.dtype,
                "device": self.device}

    def answer_identity(self, policy: str) -> dict[str, Any]:
        """The model and its settings, and `policy`'s adapter (by path and weights hash)."""
        return {"model": self._model_identity(),
                "adapter": {"adapter": adapter_identity(self.policies.get(policy))}}

    def usage(self) -> dict[str, dict[str, Any]]:
        """Prompt tokens submitted for scoring and computed (prefix reuse computes fewer)."""
        return {"tokens": self.prompt_tokens.as_dict()}

    def close(self) -> None:
        """Forget kept prompt prefixes; the weights are freed with the backend itself."""
        if self.prefix is not None:
            self.prefix.forget()

    def __enter__(self) -> TransformersBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prompt(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads, ending where the answer begins."""
        return self.chat.text(messages)

    def prompt_ids(self, messages: Sequence[Any]) -> list[int]:
        """The prompt's token ids, exactly as scored (and as finetuning trains on them)."""
        return self.chat.ids(messages)

    @contextlib.contextmanager
    def policy(self, name: str) -> Iterator[None]:
        """Answer as this policy: its adapter active, or the adapters off for base weights."""
        if name not in self.policies:
            raise ValueError(f"policy {name!r} is not registered with this backend; "
                             f"registered: {', '.join(self.policies)}")
        path = self.policies[name]
        if not hasattr(self.model, "disable_adapter"):  # not (yet) wrapped by peft
            yield
        elif path is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(name)
            yield

    def label_id(self, label: str) -> int:
        """The single token an option label is answered with."""
        return self.chat.label_id(label)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """Probability of each option label as the first answer token, renormalised."""
        prompts = [self.prompt_ids(q.messages) for q in queries]
        labels = [[self.label_id(label) for label in q.labels] for q in queries]
        self.prompt_tokens.prompt_submitted += sum(map(len, prompts))
        if self.prefix is not None:
            return self._reused(queries, prompts, labels)
        self.prompt_tokens.prompt_computed += sum(map(len, prompts))
        out: list[Distribution | None] = [None] * len(queries)
        for batch in self._batches(prompts, [q.policy for q in queries]):
            with self.policy(queries[batch[0]].policy):
                logprobs = self._last_logprobs([prompts[i] for i in batch])
            for row, i in enumerate(batch):
                out[i] = options_from_logprobs(logprobs[row, labels[i]])
        return [d for d in out if d is not None]

    def _reused(self, queries: Sequence[ChoiceQuery], prompts: list[list[int]],
                labels: list[list[int]]) -> list[Distribution]:
        """option_distributions with each shared prefix computed once (see segments)."""
        assert self.prefix is not None
        out: list[Distribution | None] = [None] * len(queries)
        before = self.prefix.computed
        self.prefix.next_call()
        for name in sorted({q.policy for q in queries}):  # the order the kept segments assume
            mine = [i for i, q in enumerate(queries) if q.policy == name]
            with no_grad(), self.policy(name):
                found = self.prefix.label_logprobs(
                    name, [prompts[i] for i in mine],
                    [self.chat.cuts(queries[i].messages, prompts[i]) for i in mine],
                    [labels[i] for i in mine])
            for i, logprobs in zip(mine, found, strict=True):
                out[i] = options_from_logprobs(logprobs)
        self.prompt_tokens.prompt_computed += self.prefix.computed - before
        return [d for d in out if d is not None]

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """Greedy text for each query (batched, left padded)."""
        prompts = [self.prompt_ids(q.messages) for q in queries]
        self.prompt_tokens.prompt_submitted += sum(map(len, prompts))
        self.prompt_tokens.prompt_computed += sum(map(len, prompts))
        texts = [""] * len(queries)
        for batch in self._batches(prompts, [q.policy for q in queries]):
            ids, mask = self._pad([prompts[i] for i in batch])
            with no_grad(), self.policy(queries[batch[0]].policy):
                new = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=max(queries[i].max_tokens for i in batch),
                                          pad_token_id=self.tokenizer.pad_token_id)
            for row, i in enumerate(batch):
                texts[i] = self.tokenizer.decode(new[row, ids.shape[1]:], skip_special_tokens=True)
        return texts

    def _batches(self, prompts: list[list[int]], policies: list[str]) -> list[list[int]]:
        """Group prompts of one policy and similar length: small padding, bounded memory."""
        order = sorted(range(len(prompts)), key=lambda i: (policies[i], len(prompts[i])))
        batches, current, longest = [], [], 0
        for i in order:
            longest_if = max(longest, len(prompts[i]))
            if current and (longest_if * (len(current) + 1) > self.token_budget
                            or policies[i] != policies[current[0]]):
                batches.append(current)
                current, longest_if = [], len(prompts[i])
            current.append(i)
            longest = longest_if
        return [*batches, current] if current else batches

    def _pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                            device=self.device)
        return ids, mask

    def answer_logits(self, prompts: list[list[int]], keep: int = 1) -> torch.Tensor:
        """Logits over the vocabulary at the last `keep` positions of each prompt, [batch, keep,
        vocab]; [:, -1] is the answer position. Finetuning trains these very logits."""
        if self.prefix is not None:  # training changes the weights the kept prefixes came from
            self.prefix.forget()
        ids, mask = self._pad(prompts)
        # Positions count real tokens only, so a left-padded prompt scores as if alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          logits_to_keep=keep).logits

    def _last_logprobs(self, prompts: list[list[int]]) -> np.ndarray:
        """Log-softmax over the vocabulary at each prompt's answer position."""
        import torch

        with torch.inference_mode():
            logits = self.answer_logits(prompts)[:, -1, :]
        return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()


def full_attention(config: Any) -> bool:
    """Whether every layer attends to the whole past (no sliding window), the one cache layout
    prefix reuse rebuilds; other models score every prompt whole."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(kind == "full_attention" for kind in layer_types)
    return (getattr(config, "sliding_window", None) is None
            or getattr(config, "use_sliding_window", True) is False)


def kv_bytes_per_token(config: Any, dtype: str) -> int:
    """Bytes of keys and values one token holds across the model's layers."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * torch_dtype(dtype).itemsize


def torch_dtype(name: str) -> torch.dtype:
    """torch's dtype of this name (torch imported here: this file is read to validate options)."""
    import torch

    return getattr(torch, name)


def no_grad() -> Any:
    """torch.inference_mode(): scoring keeps no autograd state."""
    import torch

    return torch.inference_mode()
