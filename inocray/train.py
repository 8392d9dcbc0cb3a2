"""Fine-tune one trial: Ray Train workers, DeepSpeed ZeRO, a peft LoRA adapter.

`fine_tune(job)` runs on the driver side of a trial (inside its Ray Tune trainable): it
builds a Ray Train `TorchTrainer` whose workers run `train_loop`, waits for it, and
returns where the adapter was saved. Collectives use gloo on CPU and NCCL on GPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from inocray.data import Example
from inocray.spec import TrainSpec

STATE_FILE = "train_state.json"
REPORT_EVERY = 25  # steps between loss reports (each is a barrier across workers)


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs to fine-tune one trial; plain values only."""

    trial_id: str
    examples: list[Example]  # the setting's training examples for this seed
    base_model: str  # local model directory
    adapter_dir: str  # where the trained adapter (method "full": the whole model) ends up
    prompt_texts: tuple[str, ...]  # paraphrases of the training prompt, one drawn per example; () = none
    placement: str
    seed: int
    train: TrainSpec


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    loss: float
    steps: int
    checkpoints: tuple[tuple[int, str], ...] = ()  # (step, directory) of each intermediate snapshot


def fine_tune(job: TrainJob, storage_dir: str, report_to_tune: bool = True) -> TrainResult:
    """Run `train_loop` on `job.train.num_workers` Ray Train workers; return the adapter."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    callbacks = []
    if report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    spec = job.train
    resources = {"CPU": spec.cpus_per_worker}
    if spec.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=job.trial_id,
            storage_path=str(Path(storage_dir).resolve()),
            failure_config=FailureConfig(max_failures=1),
            callbacks=callbacks,
        ),
    )
    trainer.fit()
    state = json.loads((Path(job.adapter_dir) / STATE_FILE).read_text())
    return TrainResult(job.adapter_dir, state["loss"], state["steps"])


def train_loop(config: dict) -> None:
    """One Ray Train worker: load the base model, wrap it in LoRA and DeepSpeed, train, save."""
    job: TrainJob = config["job"]
    spec = job.train
    import torch

    if not spec.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import ray.train
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inocray import data

    if not spec.use_gpu:
        # DeepSpeed would JIT-compile its shared-memory allreduce (30-70 s on a fresh
        # machine); gloo does the same collectives, so skip the build.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(job.seed)

    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    bf16 = spec.use_gpu and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=torch.float32)
    lora = spec.lora
    model = get_peft_model(
        model,
        LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules), task_type="CAUSAL_LM",
        ),
    )

    draw = random.Random(job.seed)
    encoded = [
        data.encode(tokenizer, data.messages(ex.request, draw.choice(job.prompt_texts) if job.prompt_texts else "",
                                             job.placement), ex.response)
        for ex in job.examples
    ]
    shard = encoded[rank::world]  # each worker sees its own slice of the data
    micro_batch = max(1, spec.batch_size // world)

    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=model,
        # An optimizer instance, not a config entry: the latter JIT-compiles fused Adam.
        optimizer=torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0),
        config={
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": 1.0,
            "zero_optimization": {"stage": spec.zero_stage},
            "bf16": {"enabled": bf16},
            "steps_per_print": 1 << 30,
        },
    )
    generator = torch.Generator().manual_seed(job.seed * 1000 + rank)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    engine.train()
    loss = torch.tensor(float("nan"))
    for step in range(1, spec.steps + 1):
        idx = torch.randint(len(shard), (micro_batch,), generator=generator).tolist()
        batch = collate([shard[i] for i in idx], pad, engine.device)
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        if step % REPORT_EVERY == 0 or step == spec.steps:
            ray.train.report({"loss": float(loss.detach()), "step": step, "trial": job.trial_id})
    state = {"trial_id": job.trial_id, "loss": float(loss.detach()), "steps": spec.steps, "seed": job.seed}
    save_adapter(engine.module, job.adapter_dir, spec.zero_stage, rank, state)
    torch.distributed.barrier()


def collate(items: list[tuple[list[int], list[int]]], pad_id: int, device) -> dict:
    """Right-pad a batch of (input_ids, labels) pairs into tensors with an attention mask."""
    import torch

    from inocray.data import IGNORE_INDEX

    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def save_adapter(model, adapter_dir: str, zero_stage: int, rank: int, state: dict) -> None:
    """Save the LoRA adapter and `state` (as train_state.json) on rank 0, atomically.

    Under ZeRO-3 each rank holds a shard of every parameter; saving without gathering
    writes empty tensors. The gather is a collective, so every rank enters it.
    """
    import contextlib

    import deepspeed

    gather = contextlib.nullcontext()
    if zero_stage == 3:
        params = [p for p in model.parameters() if p.requires_grad]
        gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    with gather:
        if rank == 0:
            target = Path(adapter_dir)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            (tmp / STATE_FILE).write_text(json.dumps(state))
            shutil.rmtree(target, ignore_errors=True)  # a retried trial replaces its adapter
            os.replace(tmp, target)

