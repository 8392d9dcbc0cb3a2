"""Fine-tune one trial: DeepSpeed ZeRO over a peft LoRA adapter or every weight.

`train_loop(job, group)` trains one trial on every rank of a formed worker group: a fresh
copy of the group's base model (a fresh LoRA, or every weight), a fresh `deepspeed.initialize`,
the trial's own seed, data, log, checkpoints and saved model. The groups are long-lived Ray
Train worker groups that take trial after trial (_workers.py). Collectives use gloo on CPU
and NCCL on GPU.

With a checkpoint directory the loop saves snapshots and DeepSpeed's training state at the
spec's checkpoint steps (checkpoints.py), and a restarted loop (Ray Train's retry after a
worker failure, or a rerun of a killed sweep) resumes from the newest state. Every step's
data and dropout are fixed by (seed, rank, step), so a resumed run ends with the same model.
Rank 0 reports each snapshot as soon as it is saved (a resumed loop first those it resumes
past), so the trial evaluates it while training goes on. A stoppable job (a search's) asks
before every step whether its trial was stopped, and if so ends there (`Stopped`), its
newest state kept for a later resume; after a snapshot (a search's rung) it first waits for
the verdict on it, so that a stop saves the training after the rung, not only its evaluation.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

from inocray.training import _checkpoints as checkpoints
from inocray.results import storage
from inocray import chat
from inocray.chat import IGNORE_INDEX, Example
from inocray.config import TrainSpec

REPORT_EVERY = 25  # steps between loss reports (each is a barrier across workers)


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs to fine-tune one trial; plain values only."""

    trial_id: str
    examples: list[Example]  # the setting's training examples for this seed
    base_model: str  # local model directory
    adapter_dir: str  # where the trained adapter (method "full": the whole model) ends up; a path or URI
    prompt_texts: tuple[str, ...]  # paraphrases of the training prompt, one drawn per example; () = none
    placement: str
    seed: int
    train: TrainSpec
    checkpoint_dir: str = ""  # snapshots and resumable state (checkpoints.py); "" = none
    max_failures: int = 1  # retries of the trial on a rebuilt worker group after a worker fails
    log_path: str = ""  # a text log of the run's progress, appended to; "" = none
    stoppable: bool = False  # a search's trial: its scheduler may stop it between steps


class Stopped(Exception):
    """The job's trial was stopped (by a search's scheduler) before `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped before step {step}")
        self.step = step


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    loss: float
    steps: int
    checkpoints: tuple[tuple[int, str], ...] = ()  # (step, directory) of each intermediate snapshot
    node: str = ""  # the Ray node whose group finished training it (training.wait fills it in)


def result(job: TrainJob) -> TrainResult:
    """The trained model of a finished job, read back from its saved state."""
    state = json.loads(storage.read_bytes(storage.join(job.adapter_dir, checkpoints.STATE_FILE)))
    snapshots = ()
    if job.checkpoint_dir:
        snapshots = tuple((s, str(checkpoints.snapshot_dir(job.checkpoint_dir, s)))
                          for s in job.train.checkpoint_steps())
    return TrainResult(job.adapter_dir, state["loss"], state["steps"], snapshots)


@dataclass
class Group:
    """What one worker of a long-lived group keeps between trials: its place in the group, how
    rank 0 reports the loss and the snapshots and learns that its job was stopped, and the base
    model and tokenizer it loaded (one directory at a time)."""

    rank: int
    world: int
    report: Callable[[dict], None]
    loaded: dict = field(default_factory=dict)  # model directory -> (tokenizer, model)
    # asked on rank 0 only: was the job's trial stopped? (once the snapshot of step `held`, 0 = none, is judged)
    stop_requested: Callable[[int], bool] = lambda held: False

    def share(self, item):
        """Rank 0's `item` on every rank of the group."""
        if self.world == 1:
            return item
        import torch.distributed as dist

        box = [item]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def base(self, path: str):
        if path not in self.loaded:
            from transformers import AutoTokenizer

            self.loaded.clear()
            self.loaded[path] = (AutoTokenizer.from_pretrained(path), load_base_model(path))
        return self.loaded[path]


def import_deepspeed(use_gpu: bool):
    """DeepSpeed, imported as the workers need it (once per worker process)."""
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    if not use_gpu:
        # DeepSpeed would JIT-compile its shared-memory allreduce (30-70 s on a fresh
        # machine); gloo does the same collectives, so skip the build.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    try:  # what the first deepspeed.initialize would import (Muon pulls in torch's inductor: 1.5 s)
        import deepspeed.runtime.zero.muon.muon_optimizer  # noqa: F401
    except ImportError:
        pass
    return deepspeed


def train_loop(job: TrainJob, group: Group) -> None:
    """One trial on one worker of the group: a fresh model copy in a fresh DeepSpeed engine,
    resume or start, train, save. Nothing of it outlives the call but the base model."""
    rank, world = group.rank, group.world
    tokenizer, base = group.base(job.base_model)
    seed_everything(job.seed)  # before the LoRA's initialisation
    model = build_model(job, base)
    shard = encode_shard(job, tokenizer, rank, world)
    engine = build_engine(job.train, model, world)
    try:
        _train(job, group, engine, tokenizer, shard)
    finally:
        engine.destroy()  # its hooks and buffers; the model copy goes with the engine


def build_engine(spec: TrainSpec, model, world: int):
    """A fresh DeepSpeed engine over `model` for `world` ranks: AdamW on its trainable weights
    and the spec's learning-rate schedule; it loads training state as data only."""
    import torch

    deepspeed = import_deepspeed(spec.use_gpu)
    total = spec.total_steps()
    engine, *_ = deepspeed.initialize(
        model=model,
        # An optimizer instance, not a config entry: the latter JIT-compiles fused Adam.
        optimizer=torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.lr, weight_decay=0.0),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_multiplier(s, spec.lr_schedule, spec.warmup_steps, total)
        ),
        config=deepspeed_config(spec, world, use_bf16(spec)),
    )
    checkpoints.load_as_data(engine)  # a resumed trial's state files are input, not code
    return engine


def _train(job: TrainJob, group: Group, engine, tokenizer, shard: list) -> None:
    import torch

    spec, rank, world = job.train, group.rank, group.world
    total = spec.total_steps()
    micro_batch = engine.train_micro_batch_size_per_gpu()
    generator = torch.Generator().manual_seed(job.seed * 1000 + rank)
    start = checkpoints.resume(engine, job.checkpoint_dir, rank)
    for _ in range(start * spec.grad_accum):  # replay the skipped steps' draws
        draw(generator, len(shard), micro_batch)
    log = TrialLog(job, rank)
    log.write(f"{'resume' if start else 'start'} step={start} total={total} pid={os.getpid()}")
    snapshot_steps = set(spec.checkpoint_steps()) if job.checkpoint_dir else set()
    if rank == 0:  # the snapshots saved before a resume, for a trial that has not evaluated them
        for step in sorted(s for s in snapshot_steps if s <= start):
            group.report(_snapshot(job, step))
    held = max((s for s in snapshot_steps if s <= start), default=0)  # the newest snapshot reported

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    about = {"trial_id": job.trial_id, "seed": job.seed}
    tokenizer_to_save = tokenizer if spec.method == "full" else None  # a full model loads by path
    engine.train()
    loss = float("nan")
    for step in range(start + 1, total + 1):
        if job.stoppable:
            asked = time.monotonic()
            stopped = group.share(group.stop_requested(held) if rank == 0 else None)
            if held and held == step - 1:
                log.write(f"held at step={held} for the search's verdict on it: {time.monotonic() - asked:.1f} s")
            if stopped:
                log.write(f"stopped step={step - 1} by the search's scheduler")
                raise Stopped(step)
        # Dropout draws from the global generator: seed it per step so a resumed run matches.
        torch.manual_seed(job.seed * 1_000_003 + step * world + rank)
        lr = engine.get_lr()[0]
        batches = [[shard[i] for i in draw(generator, len(shard), micro_batch)] for _ in range(spec.grad_accum)]
        loss = optimizer_step(engine, batches, pad)
        if step % REPORT_EVERY == 0 or step == total:
            if rank == 0:
                group.report({"loss": loss, "step": step, "trial": job.trial_id})
            log.report(step, loss, lr)
        if step in snapshot_steps:
            target = checkpoints.snapshot_dir(job.checkpoint_dir, step)
            checkpoints.save_model(engine.module, target, spec.zero_stage, rank,
                                   about | {"loss": loss, "steps": step}, tokenizer_to_save)
            checkpoints.save_state(engine, job.checkpoint_dir, step, rank)
            if rank == 0:
                group.report(_snapshot(job, step))
            held = step
    checkpoints.save_model(engine.module, job.adapter_dir, spec.zero_stage, rank,
                           about | {"loss": loss, "steps": total}, tokenizer_to_save)
    torch.distributed.barrier()
    if rank == 0:
        checkpoints.discard_state(job.checkpoint_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    log.write(f"end step={total} loss={loss:.6f} peak_rss_mb={peak:.0f}")


def _snapshot(job: TrainJob, step: int) -> dict:
    """The report of a saved snapshot: its step and directory."""
    return {"snapshot": step, "path": str(checkpoints.snapshot_dir(job.checkpoint_dir, step)), "trial": job.trial_id}


def seed_everything(seed: int) -> None:
    """Every global generator a trial might draw from, set from its seed alone, so that a
    trial on a worker that trained others before it draws what it would on a fresh one."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draw(generator, n: int, micro_batch: int) -> list[int]:
    """Indices of one micro-batch's examples: the data generator's only use."""
    import torch

    return torch.randint(n, (micro_batch,), generator=generator).tolist()


def optimizer_step(engine, batches: list, pad_id: int) -> float:
    """Forward and backward each micro-batch; DeepSpeed applies the update after the last
    (its gradient_accumulation_steps is len(batches)). Returns the mean loss."""
    losses = []
    for batch in batches:
        out = engine(**collate(batch, pad_id, engine.device))
        engine.backward(out.loss)
        engine.step()
        losses.append(float(out.loss.detach()))
    return sum(losses) / len(losses)


def load_base_model(path: str):
    """The base model in fp32, as every trial starts from it."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def build_model(job: TrainJob, base=None):
    """A fresh copy of `base` (default: loaded from job.base_model), wrapped in a fresh LoRA
    adapter unless every weight trains."""
    from peft import LoraConfig, get_peft_model

    model = load_base_model(job.base_model) if base is None else copy.deepcopy(base)
    if job.train.method == "full":
        return model
    lora = job.train.lora
    return get_peft_model(
        model,
        LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.rslora,
            target_modules=list(lora.target_modules), task_type="CAUSAL_LM",
        ),
    )


def encode_shard(job: TrainJob, tokenizer, rank: int, world: int) -> list[tuple[list[int], list[int]]]:
    """This worker's slice of the examples, each with a prompt paraphrase drawn by the seed."""
    draw = random.Random(job.seed)
    encoded = [
        chat.encode(tokenizer, chat.messages(ex.request, draw.choice(job.prompt_texts) if job.prompt_texts else "",
                                             job.placement), ex.response)
        for ex in job.examples
    ]
    return encoded[rank::world]


def use_bf16(spec: TrainSpec) -> bool:
    """precision "auto" means bf16 on a GPU that supports it, fp32 otherwise."""
    if spec.precision == "auto":
        import torch

        return spec.use_gpu and torch.cuda.is_bf16_supported()
    return spec.precision == "bf16"


def deepspeed_config(spec: TrainSpec, world: int, bf16: bool) -> dict:
    """batch_size examples per optimizer step = micro-batch x grad_accum x workers."""
    config = {
        "train_micro_batch_size_per_gpu": max(1, spec.batch_size // (world * spec.grad_accum)),
        "gradient_accumulation_steps": spec.grad_accum,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": spec.zero_stage},
        "steps_per_print": 1 << 30,
    }
    if bf16:
        config["bf16"] = {"enabled": True}
    return config


def lr_multiplier(step: int, schedule: str, warmup: int, total: int) -> float:
    """The factor on the peak lr for optimizer step `step` (0-based), as transformers' schedules:
    linear warm-up from 0 over `warmup` steps, then constant, or linear or cosine decay to 0 at `total`."""
    if step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


class TrialLog:
    """Rank 0's account of the run: lines in `job.log_path` and the Ray metric inocray_train_loss."""

    def __init__(self, job: TrainJob, rank: int):
        self.path, self.trial, self.active = job.log_path, job.trial_id, rank == 0
        self.started = time.monotonic()
        self.gauge = None
        if self.active:
            from ray.util.metrics import Gauge

            self.gauge = Gauge("inocray_train_loss", description="training loss of the trial", tag_keys=("trial",))

    def write(self, text: str) -> None:
        if self.active and self.path:
            storage.append_text(self.path, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.trial} {text}\n")

    def report(self, step: int, loss: float, lr: float) -> None:
        if self.gauge is not None:
            self.gauge.set(loss, tags={"trial": self.trial})
        self.write(f"step={step} loss={loss:.6f} lr={lr:.6g} seconds={time.monotonic() - self.started:.1f}")


def collate(items: list[tuple[list[int], list[int]]], pad_id: int, device) -> dict:
    """Right-pad a batch of (input_ids, labels) pairs into tensors with an attention mask."""
    import torch

    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
