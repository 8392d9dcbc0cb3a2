"""inocray's training step on one GPU: steps/s, tokens/s and peak memory of one LoRA trial.

    python bench/gpu_train_step.py [--steps 10] [--warmup 3] [--out gpu_bench.json]
    python bench/gpu_train_step.py --cpu --steps 2      # a tiny model on the CPU, to check the script
    python bench/gpu_train_step.py --profile [--cpu]    # where one step's time goes (16 x 256, bf16, ZeRO-2)

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

--profile measures one shape instead (PROFILE_RUN; CPU_RUNS[0] with --cpu), after the warm-up:
- steps/s of `--steps` plain `optimizer_step` calls, as above;
- the same step split into phases with torch.cuda.synchronize between them (collate and copy
  to the device, forward, `engine.backward`, `engine.step`, reading the loss), the median of
  `--steps` steps, and the host time spent inside DeepSpeed's own pieces (the per-parameter
  gradient hook that buckets gradients, the bucket reduction and its all_reduce, the end of
  backward, the ZeRO optimizer step with its overflow check and gradient norm, AdamW itself,
  zero_grad, the lr scheduler), timed where they are called, without synchronizing;
- PROFILE_STEPS steps under torch.profiler (CPU and CUDA activities): the top 25 ops by self
  CPU time and by self CUDA time, the DeepSpeed pieces as labelled ranges, and the kernel time
  against the wall time;
- the same step as a plain torch loop on the same model without DeepSpeed (whole model bf16,
  or fp32 for an fp32 shape; `model(**batch).loss.backward()`, torch.optim.AdamW `step` and
  `zero_grad`): steps/s and the same phases.
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
PROFILE_RUN = (16, 256, "bf16", 2)
PROFILE_STEPS = 3
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


def trial_engine(model_dir: str, batch: int, precision: str, zero: int, steps: int, cpu: bool):
    """The model and DeepSpeed engine that training's `train_loop` builds (its own `build_model`
    and `build_engine`) for a trial of `steps` optimizer steps (the lr schedule's length); also
    the number of trainable parameters."""
    import torch

    from inocray.config import TrainSpec
    from inocray.training import TrainJob, build_engine, build_model

    spec = TrainSpec(batch_size=batch, zero_stage=zero, precision=precision, use_gpu=not cpu, steps=steps)
    job = TrainJob(trial_id="bench", examples=[], base_model=model_dir, adapter_dir="", prompt_texts=(),
                   placement="", seed=0, train=spec)
    torch.manual_seed(0)
    model = build_model(job)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # before ZeRO-3 partitions them
    engine = build_engine(spec, model, 1)
    engine.train()
    return engine, model, trainable


def step_batches(batch: int, length: int, vocab: int) -> list[list]:
    """Four steps' worth of data, one micro-batch a step, used in turn."""
    return [[rows(batch, length, vocab, seed)] for seed in range(4)]


def measure_training(model_dir: str, batch: int, length: int, precision: str, zero: int,
                     args, memory: Memory) -> dict:
    from inocray.training._loop import optimizer_step

    held = memory.reset()
    engine, model, trainable = trial_engine(model_dir, batch, precision, zero, args.warmup + args.steps, args.cpu)
    batches = step_batches(batch, length, model.config.vocab_size)
    for step in range(args.warmup):
        optimizer_step(engine, batches[step % 4], pad_id=2)
    seconds, loss = time_steps(lambda step: optimizer_step(engine, batches[step % 4], pad_id=2), args.steps, memory)
    result = {"batch": batch, "tokens": length, "precision": precision, "zero": zero, "steps": args.steps,
              "seconds": round(seconds, 4), "steps_per_s": round(args.steps / seconds, 3),
              "tokens_per_s": round(batch * length * args.steps / seconds),
              "peak_gib": _round(memory.peak()), "held_before_gib": _round(held), "loss": round(loss, 4),
              "trainable": trainable}
    engine.destroy()
    del engine, model
    return result


def time_steps(step_fn, steps: int, memory: Memory) -> tuple[float, float]:
    """Seconds for `steps` calls of step_fn(step) between synchronizations; the last loss."""
    memory.sync()
    t0 = time.perf_counter()
    for step in range(steps):
        loss = step_fn(step)
    memory.sync()
    return time.perf_counter() - t0, loss


class Phases:
    """Milliseconds of each phase of a step, with a synchronize at each phase's end."""

    def __init__(self, memory: Memory):
        self.memory, self.times = memory, {}

    def __call__(self, name: str, fn):
        self.memory.sync()
        t0 = time.perf_counter()
        value = fn()
        self.memory.sync()
        self.times.setdefault(name, []).append(1000 * (time.perf_counter() - t0))
        return value

    def medians(self) -> dict:
        return {name: round(statistics.median(ms), 3) for name, ms in self.times.items()}


class HostClock:
    """Wraps named methods so each call is a torch.profiler range and its host time is summed."""

    def __init__(self):
        self.ms, self.calls, self.undo = {}, {}, []

    def wrap(self, owner, name: str, label: str) -> None:
        import torch

        original = getattr(owner, name, None)
        if original is None:
            return

        def timed(*a, **k):
            with torch.profiler.record_function(label):
                t0 = time.perf_counter()
                try:
                    return original(*a, **k)
                finally:
                    self.ms[label] = self.ms.get(label, 0.0) + 1000 * (time.perf_counter() - t0)
                    self.calls[label] = self.calls.get(label, 0) + 1

        self.undo.append((owner, name, vars(owner).get(name)))
        setattr(owner, name, timed)

    def reset(self) -> None:
        self.ms, self.calls = {}, {}

    def per_step(self, steps: int) -> dict:
        return {label: {"calls": self.calls[label] / steps, "host_ms": round(self.ms[label] / steps, 3)}
                for label in self.ms}

    def restore(self) -> None:
        for owner, name, own in reversed(self.undo):
            if own is None:
                delattr(owner, name)  # the class's method shows through again
            else:
                setattr(owner, name, own)
        self.undo = []


def instrument_deepspeed(engine) -> HostClock:
    """The pieces of a ZeRO-1/2 step that are DeepSpeed's rather than the model's or AdamW's."""
    from deepspeed import comm

    clock = HostClock()
    zero = engine.optimizer
    for name in ("process_gradients", "reduce_ipg_grads", "independent_gradient_partition_epilogue", "step",
                 "scaled_global_norm", "check_overflow", "update_lp_params", "zero_grad"):
        clock.wrap(zero, name, f"ds.zero.{name}")
    clock.wrap(zero.optimizer, "step", "torch.AdamW.step")
    if engine.lr_scheduler is not None:
        clock.wrap(engine.lr_scheduler, "step", "lr_scheduler.step")
    for name in ("all_reduce", "reduce_scatter_tensor", "all_gather_into_tensor", "broadcast", "barrier"):
        clock.wrap(comm, name, f"ds.comm.{name}")
    return clock


def profile_training(model_dir: str, batch: int, length: int, precision: str, zero: int,
                     args, memory: Memory) -> dict:
    """Where one steady-state step's time goes: see the module docstring."""
    import torch

    from inocray.training._loop import collate, optimizer_step

    engine, model, trainable = trial_engine(model_dir, batch, precision, zero,
                                            args.warmup + 2 * args.steps + PROFILE_STEPS, args.cpu)
    batches = step_batches(batch, length, model.config.vocab_size)
    for step in range(args.warmup):
        optimizer_step(engine, batches[step % 4], pad_id=2)
    seconds, _ = time_steps(lambda step: optimizer_step(engine, batches[step % 4], pad_id=2), args.steps, memory)
    result = {"batch": batch, "tokens": length, "precision": precision, "zero": zero, "steps": args.steps,
              "trainable": trainable, "deepspeed_steps_per_s": round(args.steps / seconds, 3)}

    clock = instrument_deepspeed(engine)
    phases = Phases(memory)
    for step in range(args.steps):  # optimizer_step's body, one micro-batch, a phase at a time
        inputs = phases("collate", lambda: collate(batches[step % 4][0], 2, engine.device))
        out = phases("forward", lambda: engine(**inputs))
        phases("backward", lambda: engine.backward(out.loss))
        phases("step", lambda: engine.step())
        phases("loss", lambda: float(out.loss.detach()))
    result["deepspeed_phases_ms"] = phases.medians()
    result["deepspeed_host_ms_per_step"] = clock.per_step(args.steps)

    clock.reset()
    activities = [torch.profiler.ProfilerActivity.CPU] + ([] if args.cpu else [torch.profiler.ProfilerActivity.CUDA])
    memory.sync()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        for step in range(PROFILE_STEPS):
            optimizer_step(engine, batches[step % 4], pad_id=2)
        memory.sync()
    wall_ms = 1000 * (time.perf_counter() - t0) / PROFILE_STEPS
    clock.restore()
    result["profile"] = report_profile(prof, wall_ms, list(clock.ms), args.cpu)
    engine.destroy()
    del engine, model
    gc.collect()
    result["plain_torch"] = plain_training(model_dir, batch, length, precision, args, memory)
    return result


def report_profile(prof, wall_ms: float, labels: list[str], cpu: bool) -> dict:
    """Prints the profiler's tables; returns the per-step totals that the summary needs."""
    from torch.autograd import DeviceType

    averages = prof.key_averages()
    print(f"\n== top 25 ops by self CPU time, {PROFILE_STEPS} steps ==")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    if not cpu:
        print(f"\n== top 25 ops by self CUDA time, {PROFILE_STEPS} steps ==")
        print(averages.table(sort_by="self_device_time_total", row_limit=25))
    print(f"\n== DeepSpeed pieces as profiler ranges, {PROFILE_STEPS} steps (total includes children) ==")
    ranges = (e for e in averages if e.key in labels and e.device_type == DeviceType.CPU)  # not their GPU-side spans
    for event in sorted(ranges, key=lambda e: -e.cpu_time_total):
        print(f"{event.key:48s} calls {event.count:6d}  CPU total {event.cpu_time_total / 1000:9.2f} ms  "
              f"device total {event.device_time_total / 1000:9.2f} ms")
    kernels = [e for e in averages  # as the table's "Self CUDA time total" counts them
               if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
    kernel_ms = sum(e.self_device_time_total for e in kernels) / 1000 / PROFILE_STEPS
    ops = sum(e.count for e in averages if e.key.startswith("aten::")) / PROFILE_STEPS
    launches = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC",
                                                          "cuLaunchKernelEx")) / PROFILE_STEPS
    cpu_ms = sum(e.self_cpu_time_total for e in averages) / 1000 / PROFILE_STEPS
    summary = {"wall_ms_per_step": round(wall_ms, 2), "kernel_ms_per_step": round(kernel_ms, 2),
               "self_cpu_ms_per_step": round(cpu_ms, 2), "aten_ops_per_step": ops, "kernel_launches_per_step": launches}
    print(f"\nper step under the profiler: wall {wall_ms:.1f} ms, GPU kernels {kernel_ms:.1f} ms, "
          f"{ops:.0f} aten ops, {launches:.0f} kernel launches")
    return summary


def plain_training(model_dir: str, batch: int, length: int, precision: str, args, memory: Memory) -> dict:
    """The same step without DeepSpeed: the model cast whole to the precision, torch AdamW."""
    import torch

    from inocray.config import TrainSpec
    from inocray.training._loop import TrainJob, build_model, collate

    spec = TrainSpec(batch_size=batch, precision=precision, use_gpu=not args.cpu)
    job = TrainJob(trial_id="bench", examples=[], base_model=model_dir, adapter_dir="", prompt_texts=(),
                   placement="", seed=0, train=spec)
    torch.manual_seed(0)
    device = "cpu" if args.cpu else "cuda"
    model = build_model(job).to(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float32).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.lr, weight_decay=0.0)
    batches = step_batches(batch, length, model.config.vocab_size)

    def step(i: int) -> float:
        loss = model(**collate(batches[i % 4][0], 2, device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for i in range(args.warmup):
        step(i)
    seconds, _ = time_steps(step, args.steps, memory)
    phases = Phases(memory)
    for i in range(args.steps):
        inputs = phases("collate", lambda: collate(batches[i % 4][0], 2, device))
        out = phases("forward", lambda: model(**inputs))
        phases("backward", lambda: out.loss.backward())
        phases("step", lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)))
        phases("loss", lambda: float(out.loss.detach()))
    del model, optimizer
    return {"steps_per_s": round(args.steps / seconds, 3), "phases_ms": phases.medians()}


def print_profile(run: dict) -> None:
    """The summary, last, so that the end of the output holds it."""
    ds, plain = run["deepspeed_phases_ms"], run["plain_torch"]["phases_ms"]
    print(f"\n== {run['batch']} x {run['tokens']} {run['precision']} ZeRO-{run['zero']}: ms per step, "
          f"median of {run['steps']}, synchronize between phases ==")
    print(f"{'phase':12s} {'DeepSpeed':>10s} {'plain torch':>12s}")
    for name in ds:
        print(f"{name:12s} {ds[name]:10.2f} {plain[name]:12.2f}")
    print(f"{'sum':12s} {sum(ds.values()):10.2f} {sum(plain.values()):12.2f}")
    print(f"steps/s without the phase synchronizations: DeepSpeed {run['deepspeed_steps_per_s']}, "
          f"plain torch {run['plain_torch']['steps_per_s']}")
    print("host ms per step inside DeepSpeed's pieces (nested: a piece's time includes those it calls):")
    for label, about in sorted(run["deepspeed_host_ms_per_step"].items(), key=lambda kv: -kv[1]["host_ms"]):
        print(f"  {label:44s} {about['calls']:7.1f} calls {about['host_ms']:9.2f} ms")
    prof = run["profile"]
    print(f"under the profiler: wall {prof['wall_ms_per_step']} ms/step, GPU kernels {prof['kernel_ms_per_step']} ms, "
          f"{prof['aten_ops_per_step']:.0f} aten ops, {prof['kernel_launches_per_step']:.0f} kernel launches")


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


def measure_all(model_dir: str, args, memory: Memory) -> dict:
    """Each of RUNS (CPU_RUNS with --cpu), then generate."""
    results = {"train": []}
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
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="a tiny model on the CPU with gloo (checks the script)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps before them")
    parser.add_argument("--out", default="gpu_bench.json", help="where the JSON results are written")
    parser.add_argument("--profile", action="store_true",
                        help="profile one shape (16 x 256 bf16 ZeRO-2) instead of the table of shapes and generate")
    args = parser.parse_args()
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")

    start_process_group(args.cpu)
    memory = Memory(args.cpu)
    results = {"machine": machine(args.cpu)}
    with tempfile.TemporaryDirectory() as model_dir:
        results["model"] = save_random_model(model_dir, args.cpu)
        if args.profile:
            results["profile"] = profile_training(model_dir, *(CPU_RUNS[0] if args.cpu else PROFILE_RUN), args, memory)
        else:
            results |= measure_all(model_dir, args, memory)
    if args.profile:
        print_profile(results["profile"])
    line = json.dumps(results)
    Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
