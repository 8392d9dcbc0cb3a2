"""What a training run writes to disk: evaluable models, and the state to resume from.

A trial's checkpoint directory, on storage that every worker of the trial can reach:

    step-<N>/       the model after optimizer step N, loadable for evaluation: a peft adapter
                    (method "lora") or a complete HF model (method "full"), and train_state.json
    state/step-<N>/ DeepSpeed's training state after step N (weights, optimizer, lr schedule,
                    one file per rank); only the newest is kept
    state/latest    the newest complete tag ("step-<N>"), written after every rank has saved it

Every model directory (snapshot or final) appears whole or not at all: it is written to a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

STATE_FILE = "train_state.json"  # beside a saved model: trial, loss, steps, seed
LATEST = "latest"  # DeepSpeed's name for the file that names the newest tag


def snapshot_dir(checkpoint_dir: str, step: int) -> Path:
    return Path(checkpoint_dir) / f"step-{step}"


def save_model(model, target_dir: str | Path, zero_stage: int, rank: int, state: dict, tokenizer=None) -> None:
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
            target = Path(target_dir)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            (tmp / STATE_FILE).write_text(json.dumps(state))
            shutil.rmtree(target, ignore_errors=True)  # a retried trial replaces its model
            os.replace(tmp, target)


def save_state(engine, checkpoint_dir: str, step: int, rank: int) -> None:
    """Save the DeepSpeed training state after `step` (a collective), then drop older ones.

    DeepSpeed's own `latest` file is written by rank 0 before the other ranks have finished
    their files; a kill in between would name a tag that cannot be loaded. So `latest` is
    written here, after a barrier, and only then are older tags deleted.
    """
    import torch.distributed as dist

    state_dir = Path(checkpoint_dir) / "state"
    tag = f"step-{step}"
    engine.save_checkpoint(
        str(state_dir), tag=tag, client_state={"step": step}, save_latest=False,
        exclude_frozen_parameters=True,  # LoRA: the frozen base model is not state
    )
    dist.barrier()
    if rank == 0:
        tmp = state_dir / f".{LATEST}.tmp"
        tmp.write_text(tag)
        os.replace(tmp, state_dir / LATEST)
        for old in state_dir.iterdir():
            if old.is_dir() and old.name != tag:
                shutil.rmtree(old, ignore_errors=True)


def latest_tag(checkpoint_dir: str) -> str | None:
    """The newest complete training-state tag under `checkpoint_dir`, or None."""
    if not checkpoint_dir:
        return None
    state_dir = Path(checkpoint_dir) / "state"
    latest = state_dir / LATEST
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    return tag if (state_dir / tag).is_dir() else None


def resume(engine, checkpoint_dir: str) -> int:
    """Load the newest complete training state into `engine`; return its step (0: none)."""
    tag = latest_tag(checkpoint_dir)
    if tag is None:
        return 0
    _, client_state = engine.load_checkpoint(
        str(Path(checkpoint_dir) / "state"), tag=tag, load_module_strict=False  # frozen weights were not saved
    )
    return int(client_state["step"])


def discard_state(checkpoint_dir: str) -> None:
    """Delete the training state once the final model is saved (for full fine-tuning it
    is several times the model's size); the snapshots stay."""
    if checkpoint_dir:
        shutil.rmtree(Path(checkpoint_dir) / "state", ignore_errors=True)
