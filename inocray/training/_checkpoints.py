"""What a training run writes to disk: evaluable models, and the state to resume from.

A trial's checkpoint directory, on storage that every worker of the trial can reach:

    step-<N>/       the model after optimizer step N, loadable for evaluation: a peft adapter
                    (method "lora") or a complete HF model (method "full"), and train_state.json
    state/step-<N>/ DeepSpeed's training state after step N (weights, optimizer, lr schedule,
                    one file per rank); only the newest is kept
    state/latest    the newest complete tag ("step-<N>"), written after every rank has saved it

Every model directory (snapshot or final) appears whole or not at all: it is written to a
temporary sibling and renamed into place.

In an s3:// run directory the files are made in local staging directories (storage.staging)
and uploaded: a model after it is saved (train_state.json last), and the training state by
every rank from a directory of its own (each rank uploads the files it wrote) before `latest`
names it. A resumed rank, on any node, downloads the newest state first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

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
            shutil.rmtree(target, ignore_errors=True)  # a retried trial replaces its model
            os.replace(tmp, target)
            if storage.is_remote(target_dir):
                storage.upload(target, target_dir, last=STATE_FILE)
                shutil.rmtree(target, ignore_errors=True)


def save_state(engine, checkpoint_dir: Location, step: int, rank: int) -> None:
    """Save the DeepSpeed training state after `step` (a collective), then drop older ones.

    DeepSpeed's own `latest` file is written by rank 0 before the other ranks have finished
    their files; a kill in between would name a tag that cannot be loaded. So `latest` is
    written here, after a barrier, and only then are older tags deleted.
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
        shared = storage.join(checkpoint_dir, "state")
        storage.write_atomically(storage.join(shared, LATEST), lambda tmp: Path(tmp).write_text(tag))
        for old in storage.names(shared, of="Directory"):
            if old != tag:
                storage.delete(storage.join(shared, old))


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
