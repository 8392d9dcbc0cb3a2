"""inocray's training step on one GPU: steps/s, tokens/s and peak memory of one LoRA trial.

    python bench/gpu_train_step.py [--steps 10] [--warmup 3] [--out gpu_bench.json]
    python bench/gpu_train_step.py --cpu --steps 2      # a tiny model on the CPU, to check the script

The model is SmolLM2-135M-Instruct's architecture (smollm2_135m_config.json beside this file,
its config.json verbatim) with random weights: steps/s and memory do not depend on the values.
It is saved once to a temporary directory, and each measurement builds it afresh with
inocray's own `train.build_model` (fp32 load, peft LoRA with the sweep's default LoRA: r=8 on
q,k,v,o,gate,up,down) and wraps it as `train.train_loop` does: DeepSpeed with a
torch.optim.AdamW instance, `train.deepspeed_config`, the `train.lr_multiplier` schedule.
Each step is `train.optimizer_step` (which collates with `train.collate`) on random token
rows of one length, every token a label. No Ray: one process, world size 1, its process group
from `deepspeed.init_distributed` (NCCL; gloo with --cpu).

Per measurement: `--warmup` steps, then `--steps` timed steps between torch.cuda.synchronize
calls; steps/s, tokens/s (batch x length x steps / seconds) and the peak of
torch.cuda.max_memory_allocated since the measurement began. Then transformers `generate`
throughput for the same model in bf16 (64 prompts of 32 tokens, 64 new tokens each, sampling).
The last line printed is the results as one JSON object, also written to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).with_name("smollm2_135m_config.json")
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}  # --cpu only

# (batch, tokens per row, precision, ZeRO stage): the CPU recipe's shape, two larger ones,
# then fp32 and ZeRO-3 at the middle shape.
RUNS = [(4, 64, "bf16", 2), (16, 256, "bf16", 2), (64, 512, "bf16", 2),
        (16, 256, "fp32", 2), (16, 256, "bf16", 3)]
CPU_RUNS = [(2, 16, "bf16", 2), (2, 16, "fp32", 2), (2, 16, "bf16", 3)]
GENERATE = (64, 32, 64)  # prompts, prompt tokens, new tokens
CPU_GENERATE = (4, 8, 8)


def start_process_group(cpu: bool) -> None:
    """World size 1 on this machine, as a Ray Train worker sees a one-worker trial."""
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(name, value)
    import deepspeed
    import torch

    if cpu:
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # as train_loop: gloo does it
    else:
        torch.cuda.set_device(0)
    deepspeed.init_distributed(dist_backend="gloo" if cpu else "nccl")


def save_random_model(directory: str, cpu: bool) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    values = json.loads(CONFIG.read_text()) | (TINY if cpu else {})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**values))
    model.save_pretrained(directory)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "layers": values["num_hidden_layers"], "hidden": values["hidden_size"]}


def rows(batch: int, length: int, vocab: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Random (input_ids, labels) pairs of one length, every token a label (no padding)."""
    import torch

    ids = torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(seed)).tolist()
    return [(r, r) for r in ids]


class Memory:
    """Peak device memory since `reset`; None on the CPU."""

    def __init__(self, cpu: bool):
        self.cpu = cpu

    def reset(self) -> float | None:
        import torch

        gc.collect()
        if self.cpu:
            return None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**30

    def sync(self) -> None:
        import torch

        if not self.cpu:
            torch.cuda.synchronize()

    def peak(self) -> float | None:
        import torch

        return None if self.cpu else torch.cuda.max_memory_allocated() / 2**30


def measure_training(model_dir: str, batch: int, length: int, precision: str, zero: int,
                     args, memory: Memory) -> dict:
    import deepspeed
    import torch

    from inocray.spec import TrainSpec
    from inocray.train import TrainJob, build_model, deepspeed_config, lr_multiplier, optimizer_step, use_bf16

    held = memory.reset()
    spec = TrainSpec(batch_size=batch, zero_stage=zero, precision=precision, use_gpu=not args.cpu,
                     steps=args.warmup + args.steps)
    job = TrainJob(trial_id="bench", examples=[], base_model=model_dir, adapter_dir="", prompt_texts=(),
                   placement="", seed=0, train=spec)
    torch.manual_seed(0)
    model = build_model(job)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # before ZeRO-3 partitions them
    total = spec.total_steps()
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.lr, weight_decay=0.0),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_multiplier(s, spec.lr_schedule, spec.warmup_steps, total)
        ),
        config=deepspeed_config(spec, 1, use_bf16(spec)),
    )
    engine.train()
    vocab = model.config.vocab_size
    batches = [[rows(batch, length, vocab, seed)] for seed in range(4)]  # one micro-batch a step
    for step in range(args.warmup):
        optimizer_step(engine, batches[step % 4], pad_id=2)
    memory.sync()
    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = optimizer_step(engine, batches[step % 4], pad_id=2)
    memory.sync()
    seconds = time.perf_counter() - t0
    result = {"batch": batch, "tokens": length, "precision": precision, "zero": zero, "steps": args.steps,
              "seconds": round(seconds, 4), "steps_per_s": round(args.steps / seconds, 3),
              "tokens_per_s": round(batch * length * args.steps / seconds),
              "peak_gib": _round(memory.peak()), "held_before_gib": _round(held), "loss": round(loss, 4),
              "trainable": trainable}
    engine.destroy()
    del engine, model
    return result


def measure_generate(model_dir: str, prompts: int, prompt_tokens: int, new_tokens: int, cpu: bool,
                     memory: Memory) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    memory.reset()
    device = "cpu" if cpu else "cuda"
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device).eval()
    ids = torch.randint(3, model.config.vocab_size, (prompts, prompt_tokens),
                        generator=torch.Generator().manual_seed(7)).to(device)

    def generate(n: int):
        return model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                              max_new_tokens=n, min_new_tokens=n, pad_token_id=2)

    with torch.no_grad():
        generate(8)  # warm-up
        times = []
        for _ in range(3):
            memory.sync()
            t0 = time.perf_counter()
            out = generate(new_tokens)
            memory.sync()
            times.append(time.perf_counter() - t0)
    assert out.shape == (prompts, prompt_tokens + new_tokens), out.shape
    seconds = statistics.median(times)
    result = {"prompts": prompts, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
              "seconds_median_of_3": round(seconds, 4), "new_tokens_per_s": round(prompts * new_tokens / seconds),
              "peak_gib": _round(memory.peak())}
    del model
    return result


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def machine(cpu: bool) -> dict:
    import deepspeed
    import peft
    import torch
    import transformers

    about = {"python": platform.python_version(), "torch": torch.__version__, "deepspeed": deepspeed.__version__,
             "transformers": transformers.__version__, "peft": peft.__version__, "cpus": os.cpu_count()}
    if not cpu:
        about["gpu"] = torch.cuda.get_device_name(0)
        about["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return about


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="a tiny model on the CPU with gloo (checks the script)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps before them")
    parser.add_argument("--out", default="gpu_bench.json", help="where the JSON results are written")
    args = parser.parse_args()
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    start_process_group(args.cpu)
    memory = Memory(args.cpu)
    results = {"machine": machine(args.cpu), "train": []}
    with tempfile.TemporaryDirectory() as model_dir:
        results["model"] = save_random_model(model_dir, args.cpu)
        for batch, length, precision, zero in CPU_RUNS if args.cpu else RUNS:
            run = measure_training(model_dir, batch, length, precision, zero, args, memory)
            print(f"train batch {batch} x {length} {precision} ZeRO-{zero}: {run['steps_per_s']} steps/s, "
                  f"{run['tokens_per_s']} tokens/s, peak {run['peak_gib']} GiB "
                  f"(held before {run['held_before_gib']} GiB), loss {run['loss']}", flush=True)
            results["train"].append(run)
        gen = measure_generate(model_dir, *(CPU_GENERATE if args.cpu else GENERATE), args.cpu, memory)
        print(f"generate {gen['prompts']} x {gen['new_tokens']} new tokens, bf16, sampling: "
              f"{gen['seconds_median_of_3']} s, {gen['new_tokens_per_s']} new tokens/s, peak {gen['peak_gib']} GiB",
              flush=True)
        results["generate"] = gen
    line = json.dumps(results)
    Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
