"""Finetune a participant policy on a pilot: a LoRA adapter trained on pilot humans' real answers.

Training conversations come from the inference schedule itself (`engine.pilot_schedule`:
SurveyModel with the humans' recorded answers, round by round across all pilot participants).
Prompts are tokenized by the backend that scores answers, and the loss is the cross-entropy of
the human's answer label token at the answer position — the very logit inference reads.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.pilot import PilotExample, PilotSplit, Sampling, split_pilot
from agents.population import STREAM_TRAINING, build_population
from engine.finetune_settings import TrainingSettings, device_problems
from engine.lock import LOCK_FILE, hold_directory
from engine.paths import check_output_path
from engine.pilot_schedule import pilot_examples
from engine.policies import TRAINING_RECORD, require_persona_without_demographics
from scenarios.errors import InputError, Problem
from scenarios.loader import LoadedScenario

if TYPE_CHECKING:  # torch and transformers load when training starts, not when the CLI parses
    import torch

    from engine.backends.transformers_backend import TransformersBackend
    from engine.runner import Progress

@dataclass(frozen=True)
class TrainingSequence:
    """One prompt to run forward, and the examples answered at its positions.

    An example whose prompt is a token prefix of a longer prompt of the same participant and round
    (the belief asked before the action that sees it) is read from the longer prompt's pass:
    causal attention gives the same logits there, and the round costs a third less.
    """

    prompt: list[int]
    readouts: list[tuple[int, int]]  # (tokens back from the prompt's end, example index)


@dataclass(frozen=True)
class FinetuneResult:
    """Where the adapter went, what it was trained on and how the loss went."""

    adapter_dir: Path
    split: PilotSplit
    examples: int
    seconds: float
    epochs: int
    losses: list[float] = field(repr=False)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last epoch's steps."""
        return float(np.mean(self.losses[-max(1, len(self.losses) // self.epochs):]))


def finetune(loaded: LoadedScenario, *, pilot: float | int, sampling: Sampling, out: Path,
             seed: int | None = None, no_demographics: bool = False,
             settings: TrainingSettings | None = None,
             progress: Progress | None = None, split: PilotSplit | None = None) -> FinetuneResult:
    """Split pilot/holdout, train a LoRA adapter on the pilot's answers, save it and training.json.

    A given `split` (a study's pilot, drawn from outside its evaluation holdout) is used as it is;
    `pilot` and `sampling` should then be the ones it was drawn with (training.json records them).
    """
    settings = settings or TrainingSettings()
    seed = loaded.scenario.seed if seed is None else seed
    if settings.problems():
        raise InputError(settings.problems())
    if device_problems(settings.device):  # before the pilot is built and the model loads
        raise InputError(device_problems(settings.device))
    if loaded.human is None:
        raise InputError([Problem(str(loaded.path), None, "population", "finetuning needs human "
                                  "rows: use population source 'twins' with a data file")])
    check_output_path(out, "--out")  # a file, or a parent that is one, fails here, not at save
    _refuse_non_empty(out)
    if no_demographics:
        require_persona_without_demographics(loaded)
    split = split or split_pilot(loaded, pilot, sampling, seed)
    examples = pilot_examples(loaded, build_population(loaded, None, seed, split.pilot),
                              show_demographics=not no_demographics, seed=seed)
    # One writer per adapter directory until its training.json is written (engine/lock.py); a
    # directory this made is removed again if training fails.
    with hold_directory(out, purpose="finetune", field="--out",
                        advice="wait for it or choose another --out"):
        _refuse_non_empty(out)  # again, now that no one else can write it
        return _train_and_save(loaded, out, split, examples, seed, no_demographics, settings,
                               progress)


def _refuse_non_empty(out: Path) -> None:
    """An adapter directory is new or empty (a stale lock file of a killed finetune aside)."""
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise InputError([Problem(str(out), None, "--out", "the adapter directory exists and is "
                                  "not empty; choose another")])


def _train_and_save(loaded: LoadedScenario, out: Path, split: PilotSplit,
                    examples: list[PilotExample], seed: int, no_demographics: bool,
                    settings: TrainingSettings, progress: Progress | None) -> FinetuneResult:
    """Load the base model, train the adapter, save it and its training.json into `out`."""
    # Only now load torch and transformers: every input error above is reported in a second.
    from engine.backends.transformers_backend import TransformersBackend
    from engine.model_source import model_directory

    model_dir = model_directory(loaded)
    backend = TransformersBackend(model_dir, dtype=settings.dtype, device=settings.device)
    started = time.perf_counter()
    losses = train_adapter(backend, examples, settings, seed, progress)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    backend.model.save_pretrained(out)
    result = FinetuneResult(out, split, len(examples), seconds, settings.epochs, losses)
    record = training_record(loaded, result, model_dir, seed, no_demographics, settings)
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return result


def training_sequences(backend: TransformersBackend,
                       examples: list[PilotExample]) -> list[TrainingSequence]:
    """Each example's prompt tokenized exactly as the backend scores it, shared where one prompt
    is a token prefix of another (checked on the token ids, never assumed)."""
    prompts = [backend.prompt_ids(e.messages) for e in examples]
    groups: dict[tuple[str, int], list[TrainingSequence]] = {}
    for i in sorted(range(len(examples)), key=lambda i: -len(prompts[i])):
        group = groups.setdefault((examples[i].participant_id, examples[i].round_id), [])
        prompt = prompts[i]
        host = next((s for s in group if s.prompt[:len(prompt)] == prompt), None)
        if host is None:
            group.append(TrainingSequence(prompt, [(0, i)]))
        else:
            host.readouts.append((len(host.prompt) - len(prompt), i))
    return [s for group in groups.values() for s in group]


def train_adapter(backend: TransformersBackend, examples: list[PilotExample],
                  settings: TrainingSettings, seed: int, progress: Progress | None) -> list[float]:
    """Wrap the backend's model with a fresh LoRA adapter and train it; the loss of every step."""
    import torch
    from peft import LoraConfig, get_peft_model

    sequences = training_sequences(backend, examples)
    answers = [backend.label_id(e.label) for e in examples]
    options = [[backend.label_id(label) for label in e.labels] for e in examples]
    order_rng = np.random.default_rng([seed, STREAM_TRAINING])
    steps_per_epoch = -(-len(sequences) // settings.batch_size)
    total = steps_per_epoch * settings.epochs
    losses: list[float] = []
    # A private torch generator state: the adapter's initial weights depend on the run seed only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(order_rng.integers(2**62)))
        config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                            lora_dropout=settings.dropout,
                            target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
        try:
            backend.model = get_peft_model(backend.model, config)
        except ValueError as exc:  # e.g. a target module this architecture does not have
            raise InputError([Problem(str(backend.model_dir), None, "--target-modules",
                                      str(exc))]) from None
        backend.model.train()
        trainable = [p for p in backend.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / total)
        for epoch in range(settings.epochs):
            for batch in _batches(order_rng, [len(s.prompt) for s in sequences], settings.batch_size):
                chosen = [sequences[i] for i in batch]
                logits, read = _readout_logits(backend, chosen)
                loss = answer_loss(logits, [answers[i] for i in read], [options[i] for i in read],
                                   settings.loss)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(round(float(loss.item()), 6))
                if progress:
                    progress(len(losses), total, f"epoch {epoch + 1}/{settings.epochs} · "
                             f"loss {np.mean(losses[-steps_per_epoch:]):.3f}")
    backend.model.eval()
    return losses


def _readout_logits(backend: TransformersBackend,
                    sequences: list[TrainingSequence]) -> tuple[torch.Tensor, list[int]]:
    """Logits at every answer position of a batch of sequences, and which example each is."""
    keep = 1 + max(back for s in sequences for back, _ in s.readouts)
    logits = backend.answer_logits([s.prompt for s in sequences], keep=keep)
    rows = [row for row, s in enumerate(sequences) for _ in s.readouts]
    columns = [keep - 1 - back for s in sequences for back, _ in s.readouts]
    return logits[rows, columns].float(), [i for s in sequences for _, i in s.readouts]


def answer_loss(logits: torch.Tensor, answers: list[int], options: list[list[int]],
                kind: str) -> torch.Tensor:
    """Mean cross-entropy of the humans' answers at their answer positions.

    'options' (default): over the option labels only — the renormalised distribution the engine
    draws answers from, so this is the likelihood of the pilot under the simulation. 'token': over
    the whole vocabulary (standard supervised finetuning; it also raises the options' mass). On a
    pretrained instruct model, whose option mass is near 1, the two nearly coincide.
    """
    import torch

    device = logits.device
    if kind == "token":
        return torch.nn.functional.cross_entropy(logits, torch.tensor(answers, device=device))
    width = max(len(o) for o in options)
    index = torch.tensor([o + o[:1] * (width - len(o)) for o in options], device=device)
    valid = torch.tensor([[k < len(o) for k in range(width)] for o in options], device=device)
    chosen = torch.tensor([o.index(a) for o, a in zip(options, answers, strict=True)],
                          device=device)
    return torch.nn.functional.cross_entropy(
        logits.gather(1, index).masked_fill(~valid, float("-inf")), chosen)


def _batches(rng: np.random.Generator, lengths: list[int], size: int) -> list[list[int]]:
    """One epoch's batches in a seeded random order, each of prompts of similar length.

    Prompts grow with every remembered round (about 290 to 560 tokens in the flagship); sorting
    within windows of 8 batches keeps padding small while examples still mix at random.
    """
    order = rng.permutation(len(lengths))
    window = size * 8
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_record(loaded: LoadedScenario, result: FinetuneResult, model_dir: Path, seed: int,
                    no_demographics: bool, settings: TrainingSettings) -> dict[str, Any]:
    """training.json: what the adapter was trained on, how, and on which exact base weights."""
    from engine.run_manifest import package_versions
    from engine.tiny_model import is_builtin
    from engine.weights import weights_digest

    assert loaded.human is not None
    split, model = result.split, loaded.scenario.model
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": {"path": str(loaded.path.resolve()), "sha256": loaded.sha256,
                     "name": loaded.scenario.name},
        "data": {"path": str(loaded.human.path.resolve()), "rows": len(loaded.human.table),
                 "sha256": hashlib.sha256(loaded.human.path.read_bytes()).hexdigest(),
                 "note": loaded.human.note},
        "base_model": {"name": model, "model_dir": str(model_dir),
                       "weights_sha256": weights_digest(model_dir),
                       "builtin_not_pretrained": is_builtin(model)},
        "seed": seed,
        "sampling": str(split.sampling),
        "pilot_size": split.size,
        "pilot_note": split.note,
        "no_demographics": no_demographics,
        "examples": result.examples,
        "hyperparameters": {**asdict(settings), "target_modules": list(settings.target_modules),
                            "loss_position": "the answer's label token at the answer position "
                                             "(the first answer token, as inference scores it)",
                            "optimiser": "AdamW, linear decay to 0, weight decay 0"},
        "seconds": round(result.seconds, 3),
        "final_loss": round(result.final_loss, 6),
        "loss": result.losses,
        "pilot_ids": split.pilot,
        "holdout_ids": split.holdout,
        "packages": package_versions(),
    }
