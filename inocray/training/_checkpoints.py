"""What a training run writes to disk: evaluable models, and the state to resume from.

A trial's checkpoint directory, on storage that every worker of the trial can reach:

    step-<N>/       the model after optimizer step N, loadable for evaluation: a peft adapter
                    (method "lora") or a complete HF model (method "full"), and train_state.json
    state/step-<N>/ DeepSpeed's training state after step N (weights, optimizer, lr schedule,
                    one file per rank); the newest and the one `latest` named before it are
                    kept (a reader may be loading it), older ones deleted
    state/latest    the newest complete tag ("step-<N>"), written after every rank has saved it

Every model directory (snapshot or final) appears whole or not at all: it is written to a
temporary sibling and renamed into place.

In an s3:// run directory the files are made in local staging directories (storage.staging)
and uploaded: a model after it is saved (train_state.json last), and the training state by
every rank from a directory of its own (each rank uploads the files it wrote) before `latest`
names it. A resumed rank, on any node, downloads the newest state first.

The training state is read back as data only: DeepSpeed's files are pickles, and its own
loader would run whatever a pickle names, so the engine's loader is replaced
(`load_as_data`) by one that unpickles tensors, plain containers and the three DeepSpeed
types its state holds (STATE_TYPES), and refuses anything else with one sentence.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import time
from importlib import import_module
from pathlib import Path

from inocray.errors import InputError
from inocray.results import storage
from inocray.results.storage import Location

STATE_FILE = "train_state.json"  # beside a saved model: trial, loss, steps, seed
LATEST = "latest"  # DeepSpeed's name for the file that names the newest tag


def snapshot_dir(checkpoint_dir: str, step: int) -> Location:
    return storage.join(checkpoint_dir, f"step-{step}")


def save_model(model, target_dir: Location, zero_stage: int, rank: int, state: dict, tokenizer=None) -> None:
    """Save the trained weights and `state` (as train_state.json) on rank 0, atomically.

    `model` is the peft model (only the adapter is written) or, for full fine-tuning, the
    transformers model, written with `tokenizer` so the directory loads by path alone.
    Under ZeRO-3 each rank holds a shard of every parameter; saving without gathering
    writes empty tensors. The gather is a collective, so every rank enters it.
    """
    import deepspeed

    gather = contextlib.nullcontext()
    if zero_stage == 3:
        trained = [p for p in model.parameters() if p.requires_grad]
        gather = deepspeed.zero.GatheredParameters(trained, modifier_rank=None)
    with gather:
        if rank == 0:
            target = storage.staging(target_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            (tmp / STATE_FILE).write_text(json.dumps(state))
            _put_in_place(tmp, target)  # a retried trial replaces its model
            if storage.is_remote(target_dir):
                storage.upload(target, target_dir, last=STATE_FILE)
                shutil.rmtree(target, ignore_errors=True)


def save_state(engine, checkpoint_dir: Location, step: int, rank: int) -> None:
    """Save the DeepSpeed training state after `step` (a collective), then drop older ones.

    DeepSpeed's own `latest` file is written by rank 0 before the other ranks have finished
    their files; a kill in between would name a tag that cannot be loaded. So `latest` is
    written here, after a barrier, and only then are older tags deleted (`_publish`: never one
    a reader may be loading or another writer naming).
    """
    import torch.distributed as dist

    remote = storage.is_remote(checkpoint_dir)
    state_dir = _local_state_dir(checkpoint_dir, rank)
    tag = f"step-{step}"
    engine.save_checkpoint(
        str(state_dir), tag=tag, client_state={"step": step}, save_latest=False,
        exclude_frozen_parameters=True,  # LoRA: the frozen base model is not state
    )
    if remote:  # this rank's files, into the shared tag; the local copy is not needed again
        storage.upload(state_dir / tag, storage.join(checkpoint_dir, "state", tag), replace=False)
        shutil.rmtree(state_dir, ignore_errors=True)
    dist.barrier()
    if rank == 0:
        _publish(storage.join(checkpoint_dir, "state"), step)


def _step(tag: str | None) -> int:
    """N of a tag "step-N"; -1 for anything else."""
    number = (tag or "").removeprefix("step-")
    return int(number) if tag and tag.startswith("step-") and number.isdigit() else -1


def _publish(shared: Location, step: int) -> None:
    """Name tag step-`step` in `latest` and drop the tags no reader can still want.

    Another writer may share the directory (a group that Ray Train replaced but whose old rank 0
    still runs, or a second driver): `latest` never moves back to an older tag than the one it
    names, and only tags older than both this tag and the one `latest` named before are deleted,
    so the tag a reader took from `latest` a moment ago, and any newer tag another writer is
    writing or naming, stay.
    """
    latest = storage.join(shared, LATEST)
    before = storage.read_bytes(latest).decode().strip() if storage.is_file(latest) else None
    tag = f"step-{step}"
    if _step(before) <= step or storage.kind(storage.join(shared, before)) != "Directory":
        storage.write_atomically(latest, lambda tmp: Path(tmp).write_text(tag))
    keep = min(step, _step(before)) if _step(before) >= 0 else step
    for old in storage.names(shared, of="Directory"):
        if 0 <= _step(old) < keep:
            storage.delete(storage.join(shared, old))


def _put_in_place(tmp: Path, target: Path) -> None:
    """Rename directory `tmp` to `target`, moving an older `target` aside first (a rename
    cannot replace a directory that has files); another writer doing the same at once leaves
    one whole model at `target`, never an error."""
    while True:
        try:
            os.replace(tmp, target)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        aside = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        with contextlib.suppress(FileNotFoundError):  # another writer moved it aside first
            os.replace(target, aside)
        shutil.rmtree(aside, ignore_errors=True)


def latest_tag(checkpoint_dir: Location) -> str | None:
    """The newest complete training-state tag under `checkpoint_dir`, or None."""
    if not checkpoint_dir:
        return None
    state_dir = storage.join(checkpoint_dir, "state")
    latest = storage.join(state_dir, LATEST)
    if not storage.is_file(latest):
        return None
    tag = storage.read_bytes(latest).decode().strip()
    return tag if storage.kind(storage.join(state_dir, tag)) == "Directory" else None


def resume(engine, checkpoint_dir: Location, rank: int = 0) -> int:
    """Load the newest complete training state into `engine`; return its step (0: none)."""
    tag = latest_tag(checkpoint_dir)
    if tag is None:
        return 0
    state_dir = _local_state_dir(checkpoint_dir, rank)
    if storage.is_remote(checkpoint_dir):
        storage.download(storage.join(checkpoint_dir, "state", tag), state_dir / tag)
    _, client_state = engine.load_checkpoint(
        str(state_dir), tag=tag, load_module_strict=False  # frozen weights were not saved
    )
    if storage.is_remote(checkpoint_dir):
        shutil.rmtree(state_dir, ignore_errors=True)
    return int(client_state["step"])


# What DeepSpeed's state files hold besides tensors and plain containers (found by listing
# the globals of the files that every ZeRO stage, method and precision writes): the ZeRO
# optimizer's loss scaler, its stage, and the slice mappings of stages 1 and 2.
STATE_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class DataOnlyLoads:
    """A DeepSpeed checkpoint engine that saves as the one it wraps and loads as data only.
    DeepSpeed calls the rest of the engine interface (save, create, commit, ...) through it
    unchanged."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def load(self, path: str, map_location=None):
        return load_state_file(path, map_location)


def load_as_data(engine) -> None:
    """Make `engine.load_checkpoint` read its files as data only (DeepSpeed's own loader
    unpickles them with weights_only=False: a pickle it is given runs as code)."""
    engine.checkpoint_engine = DataOnlyLoads(engine.checkpoint_engine)


def load_state_file(path: str, map_location=None):
    """One file of DeepSpeed's training state, unpickled with weights_only: tensors, plain
    containers and STATE_TYPES. A file that holds anything else is refused, and nothing it
    names is imported or called."""
    import torch

    types = [getattr(import_module(module), name) for module, _, name in (t.rpartition(".") for t in STATE_TYPES)]
    try:
        with torch.serialization.safe_globals(types):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))  # torch names the first global it refused
        held = f"{named[1]}, which is not data" if named else "something that is not data"
        raise InputError(
            f"{path} is not training state that inocray wrote: it holds {held} (training state is "
            f"loaded as data only); resume only run directories your own sweeps wrote, or delete the "
            f"trial's state directory to train it from its start"
        ) from None


def discard_state(checkpoint_dir: Location) -> None:
    """Delete the training state once the final model is saved (for full fine-tuning it
    is several times the model's size); the snapshots stay."""
    if checkpoint_dir:
        storage.delete(storage.join(checkpoint_dir, "state"))


def _local_state_dir(checkpoint_dir: Location, rank: int) -> Path:
    """Where DeepSpeed writes and reads the state: the shared state/ itself, or for a URI a
    local directory of this rank's own (ranks on one node must not upload each other's files)."""
    if not storage.is_remote(checkpoint_dir):
        return Path(checkpoint_dir) / "state"
    return storage.staging(checkpoint_dir) / f"state-rank{rank}"
