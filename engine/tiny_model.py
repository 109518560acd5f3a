"""`builtin:tiny`: a small Llama-architecture model and tokenizer built locally, deterministically.

It is NOT a pretrained language model: its weights are random (seeded), so its answers carry no
knowledge of people or games. It exists so the engine, finetuning and every backend can run and be
tested anywhere, with no download. Point a scenario's `model:` at a local Hugging Face model
directory for real simulations.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from scenarios.schema import BUILTIN_MODELS, BUILTIN_PREFIX

hf_logging.disable_progress_bar()  # rich draws the only progress bar

TINY_NAME = BUILTIN_MODELS[0]  # the names live in scenarios, so `validate` knows them
TINY_VERSION = "v1"
TINY_SEED = 1234
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Small vocabulary: the output layer dominates the cost of a tiny model (see environment notes).
VOCAB_SIZE = 1024
_WORDS = """
a about after again all also an and answer any are as at attack be beach beaches because been
before being believe belief both but by can choose chose coins could country day decide decided
defend defender deployed did do does each earlier education ethnicity every experiment fail fails
female few first for from game gold good group had has have he her high him his how i if in
information is island it its know known likely low male many may measures more most much my
neither new no north not of official on one only option or other our out over people pirate
play queen raid raids round rounds said same say security she should so some south statement
study than that the their them then there these they this those three three times to told
treasure true twice two under unknown up value values very was we were what when where which
who will with would year years yes you your participant online decision making question letter
deploy deployment school college degree graduate bachelor white black asian mixed non binary
happened earlier equally holds hold beach likely unlikely percent probability
""".split()


def is_builtin(model: str) -> bool:
    """Whether a scenario's model names an embedded model."""
    return model.startswith(BUILTIN_PREFIX)


def cache_root() -> Path:
    """Where built models are cached (XDG cache directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "survey-twins"


def ensure_builtin(model: str) -> Path:
    """Directory of an embedded model, built (or converted) on first use and cached."""
    from engine import embedded_model

    if model == embedded_model.NAME:
        return embedded_model.ensure_embedded(cache_root())
    if model != TINY_NAME:
        raise ValueError(f"unknown embedded model {model!r}; available: {', '.join(BUILTIN_MODELS)}")
    target = cache_root() / f"builtin-tiny-{TINY_VERSION}"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
        build_tiny(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _corpus() -> list[str]:
    """A fixed training text for the tokenizer (deterministic, no download)."""
    words = sorted(set(_WORDS))
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    lines += [" ".join(w.capitalize() for w in words[i:i + 12]) for i in range(0, len(words), 12)]
    lines += [f"{c}) " for c in "ABCDEFGHIJ"]
    lines += [f"{n} {n}% {n}-{n + 20}%" for n in range(0, 101, 5)]
    return lines * 3


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the fixed corpus, with a simple chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny(directory: Path) -> Path:
    """Write the tiny model and tokenizer to directory; same bytes on every machine."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, head_dim=32, max_position_embeddings=4096,
        initializer_range=0.2, tie_word_embeddings=False, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text(
        "builtin:tiny - NOT a pretrained language model. Random (seeded) weights of a 2-layer\n"
        "Llama-architecture model and a byte-level BPE tokenizer, built locally by\n"
        "engine/tiny_model.py for tests and demos. Its answers carry no knowledge.\n",
        encoding="utf-8",
    )
    return directory
