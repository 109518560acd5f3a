"""Finetuning settings and their defaults, apart from `engine.finetune` so that the CLI can show
the defaults in `--help` without importing numpy, torch or the agents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scenarios.errors import Problem

# Every linear layer of a Llama block: a random-weight tiny model learns little through q/v alone.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainingSettings:
    """LoRA and optimiser settings (defaults suit builtin:tiny on a CPU; see README for 8B)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    learning_rate: float = 3e-3
    epochs: int = 3
    batch_size: int = 16
    loss: str = "options"
    device: str = "cpu"
    dtype: str = "float32"

    def problems(self) -> list[Problem]:
        """Settings no training can use, as command-line problems."""
        checks = [("--rank", self.rank >= 1), ("--alpha", self.alpha > 0),
                  ("--dropout", 0 <= self.dropout < 1), ("--lr", self.learning_rate > 0),
                  ("--epochs", self.epochs >= 1), ("--batch-size", self.batch_size >= 1),
                  ("--target-modules", bool(self.target_modules)),
                  ("--loss", self.loss in ("token", "options"))]
        return [Problem("finetune", None, name, f"invalid value {self._value(name)!r}")
                for name, ok in checks if not ok]

    def _value(self, option: str) -> Any:
        names = {"--lr": "learning_rate", "--batch-size": "batch_size"}
        return getattr(self, names.get(option, option[2:].replace("-", "_")))


def device_problems(device: str) -> list[Problem]:
    """Why training cannot run on `device` (a torch device string), checked before any model
    loads; the message lists the devices this machine has."""
    import torch

    available = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        available.append("mps")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return [Problem("command line", None, "--device", f"'{device}' is not a torch device; "
                        f"this machine has: {', '.join(available)}")]
    if parsed.type == "cpu":
        return []
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and (parsed.index is None or parsed.index < count):
            return []
        has = f"{count} CUDA device(s)" if count else "no CUDA device (or a torch built without CUDA)"
        return [Problem("command line", None, "--device", f"'{device}': this machine has {has}; "
                        f"available: {', '.join(available)}")]
    if parsed.type == "mps" and "mps" in available:
        return []
    return [Problem("command line", None, "--device", f"'{device}' is not available here; "
                    f"available: {', '.join(available)}")]
