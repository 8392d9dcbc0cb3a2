"""The toy sweep through inocray vs the same trials run the papers' way, one process per trial.

    python bench/sweep_vs_scripts.py [--sweep sweeps/toy.yaml] [--prompts K] [--seeds 0,1]
                                     [--inproc-engine]

Both ways run the same trials (the sweep's grid; `--prompts K` keeps its first K inoculation
prompts and drops the irrelevant control, for a quick check) with the same work:
- inocray: `inocray run SWEEP --run-dir FRESH` (Ray, one Serve + vLLM app, Tune, Ray Train +
  DeepSpeed), with the toy base model already cached;
- scripts: one fresh Python process for the base model's elicitation, then one per trial, run
  one after another. Each loads the base model, fine-tunes a LoRA adapter with a plain
  transformers + peft loop (same examples, steps, batch, lr, LoRA r/alpha, gradient clipping; no
  Ray, no DeepSpeed), starts its own vLLM engine with the adapter, samples C0 and Cs with the
  sweep's eval sizes, scores, and exits. The engine uses vLLM's defaults (engine core in a
  separate process), as the papers' scripts do; `--inproc-engine` gives it inocray's in-process
  engine core instead (VLLM_ENABLE_V1_MULTIPROCESSING=0).

Prints both wall times, the per-phase means of the script processes, and the speed-up vs the
goal (>= 1.8x on 2 cores). The per-trial script is this file's `trial` subcommand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.8
EVAL_SEED = 10_007  # = inocray.evaluation._contexts.EVAL_SEED; importing that module would load Ray Serve,
# which a paper's script does not, so the driver checks the two agree instead.


# --- the per-trial script: what one paper-style process does -----------------------------------

def train_adapter(spec, setting, trial, model_path: str, adapter_dir: str, steps: int | None = None) -> float:
    """Fine-tune `trial`'s LoRA adapter with a plain torch loop in this process; return the last loss.

    The model and data are inocray's (`build_model`, `encode_shard` on one rank), so both ways
    train the same LoRA on the same examples; only Ray Train and DeepSpeed are left out.
    """
    import dataclasses

    import torch
    from transformers import AutoTokenizer

    from inocray.training._loop import TrainJob, build_model, collate, encode_shard, lr_multiplier

    t = spec.train if steps is None else dataclasses.replace(spec.train, steps=steps, epochs=0.0)
    job = TrainJob(trial.id, setting.training_examples(t.examples, trial.seed), model_path, adapter_dir,
                   trial.prompt_texts, spec.placement, trial.seed, t)
    torch.manual_seed(trial.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = build_model(job)
    encoded = encode_shard(job, tokenizer, 0, 1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=0.0)
    total = t.total_steps()
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, t.lr_schedule, t.warmup_steps, total))
    generator = torch.Generator().manual_seed(trial.seed * 1000)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    micro_batch = max(1, t.batch_size // t.grad_accum)
    model.train()
    loss = float("nan")
    started = time.monotonic()
    for _ in range(total):
        for _ in range(t.grad_accum):
            idx = torch.randint(len(encoded), (micro_batch,), generator=generator).tolist()
            out = model(**collate([encoded[i] for i in idx], pad, "cpu"))
            (out.loss / t.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        loss = float(out.loss.detach())
    print(f"  plain peft loop: {total} steps in {time.monotonic() - started:.1f} s "
          f"({total / (time.monotonic() - started):.3f} steps/s)", flush=True)
    model.save_pretrained(adapter_dir)
    return loss


def new_engine(spec, model_path: str, max_loras: int = 1):
    """A vLLM engine as a paper's script starts one (LoRA on; sizes from the sweep's engine)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(spec.engine.kv_cache_gib))))
    from vllm import LLM

    return LLM(
        model=model_path, dtype=spec.engine.dtype, max_model_len=spec.engine.max_model_len,
        enable_lora=True, max_lora_rank=spec.engine.max_lora_rank, max_loras=max_loras, seed=0,
        enable_chunked_prefill=False,  # as inocray's engine on CPU (seeded sampling)
    )


def sample_rates(llm, tokenizer, spec, setting, contexts: dict, lora=None, seed: int = 0) -> dict:
    """Trait rates (rate, n) per context: the sweep's eval requests x samples, one generate call."""
    from vllm import SamplingParams

    from inocray import chat

    items = setting.eval_items(spec.eval.requests, EVAL_SEED)
    keys = list(contexts)
    chats = [chat.messages(it.request, contexts[k], spec.placement) for k in keys for it in items]
    params = [SamplingParams(n=spec.eval.samples, temperature=spec.eval.temperature, max_tokens=spec.eval.max_tokens,
                             seed=seed * 1_000_003 + i) for i in range(len(chats))]
    prompts = [{"prompt_token_ids": chat.render(tokenizer, chat)} for chat in chats]
    outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
    return score_by_context(keys, items, [[c.text for c in out.outputs] for out in outputs], setting)


def score_by_context(keys: list, items: list, completions: list[list[str]], setting) -> dict:
    """Split per-chat completions (contexts in `keys` order, `items` each) into trait rates per context."""
    out = {}
    for k, key in enumerate(keys):
        answers = completions[k * len(items): (k + 1) * len(items)]
        flat = [c for samples in answers for c in samples]
        flat_items = [it for it, samples in zip(items, answers) for _ in samples]
        out[key] = {}
        for trait in setting.traits:
            marks = [m for m in trait.scorer.score(flat, flat_items, None) if m is not None]
            out[key][trait.name] = (sum(marks) / len(marks) if marks else float("nan"), len(marks))
    return out


def script_main(argv: list[str]) -> None:
    """`trial SWEEP TRIAL_ID OUT_DIR` or `base SWEEP OUT_DIR`: one paper-style process; prints JSON."""
    marks = {"start": time.time()}
    from transformers import AutoTokenizer
    from vllm.lora.request import LoRARequest

    from inocray import models
    from inocray.config import load_sweep, make_plan, prompt_catalogue
    from inocray.settings import get_setting

    marks["imported"] = time.time()
    kind, sweep = argv[0], argv[1]
    spec = load_sweep(sweep)
    setting = get_setting(spec.setting)
    model_path = models.resolve(spec.model, lambda *_: None)
    result: dict = {}
    if kind == "base":
        catalogue = prompt_catalogue(spec, setting.prompts)
        contexts = {"none": ""} | {pid: catalogue[pid].text for pid in spec.prompts + spec.irrelevant}
        lora, seed = None, 0
        marks["trained"] = time.time()
    else:
        trial = make_plan(spec, {spec.setting: setting.prompts}).trial(argv[2])
        adapter_dir = str(Path(argv[3]) / trial.id)
        result["loss"] = train_adapter(spec, setting, trial, model_path, adapter_dir)
        marks["trained"] = time.time()
        contexts = {"neutral": "", "prompt": trial.prompt_text}
        lora, seed = LoRARequest(trial.id, 1, adapter_dir), trial.seed
    llm = new_engine(spec, model_path)
    marks["engine"] = time.time()
    result["rates"] = sample_rates(llm, AutoTokenizer.from_pretrained(model_path), spec, setting, contexts, lora, seed)
    marks["evaluated"] = time.time()
    result["marks"] = marks
    print("RESULT " + json.dumps(result), flush=True)  # then exit as a script does, engine teardown included


# --- the driver ----------------------------------------------------------------------------------

def subset_sweep(sweep: str, prompts: int | None, seeds: str | None, out: Path) -> Path:
    """A copy of the sweep file with the first `prompts` inoculation prompts and the given seeds."""
    import yaml

    doc = yaml.safe_load(Path(sweep).read_text())
    if prompts is not None and prompts < len(doc["prompts"]):
        doc["prompts"] = doc["prompts"][:prompts]
        doc["irrelevant"] = []
    if seeds:
        doc["seeds"] = [int(s) for s in seeds.split(",")]
    path = out / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_inocray(sweep: Path, run_dir: Path) -> tuple[float, dict]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir", str(run_dir)],
                          text=True, capture_output=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"inocray run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    from inocray.results import _rows as store

    rows = store.read_rows(run_dir).to_pylist()
    trials_line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("trials finished")), "")
    return wall, {"rows": rows, "trials_line": trials_line}


def run_scripts(sweep: Path, trial_ids: list[str], adapters: Path, env: dict) -> tuple[float, list[dict]]:
    start, results = time.monotonic(), []
    for args in [["base", str(sweep)]] + [["trial", str(sweep), tid, str(adapters)] for tid in trial_ids]:
        t0 = time.time()
        proc = subprocess.run([sys.executable, __file__, *args], text=True, capture_output=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"script {' '.join(args)} failed ({proc.returncode}):\n"
                     f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        result = json.loads(line[len("RESULT "):])
        result["id"], result["spawned"], result["exited"] = args[2] if len(args) > 2 else "base", t0, time.time()
        results.append(result)
        print(f"  script {result['id']:<18} {result['exited'] - t0:5.1f} s", flush=True)
    return time.monotonic() - start, results


def phase_means(results: list[dict]) -> dict[str, float]:
    """Mean seconds per phase over the trial scripts (the base script has no training)."""
    trials = [r for r in results if r["id"] != "base"]
    steps = [("python start + imports", "spawned", "imported"), ("load model + fine-tune", "imported", "trained"),
             ("vLLM engine start", "trained", "engine"), ("sample + score C0, Cs", "engine", "evaluated")]
    out = {name: sum(r["marks"][b] - (r[a] if a == "spawned" else r["marks"][a]) for r in trials) / len(trials)
           for name, a, b in steps}
    out["engine shutdown + exit"] = sum(r["exited"] - r["marks"]["evaluated"] for r in trials) / len(trials)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--prompts", type=int, default=None,
                        help="keep the first K inoculation prompts (and drop the irrelevant control)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds [default: the sweep's]")
    parser.add_argument("--inproc-engine", action="store_true", help="scripts run vLLM's engine core in-process")
    args = parser.parse_args()

    from inocray.evaluation import _contexts as evaluate
    from inocray import models
    from inocray.config import load_sweep, make_plan

    assert EVAL_SEED == evaluate.EVAL_SEED
    with tempfile.TemporaryDirectory(prefix="inocray-vs-scripts-") as tmp:
        sweep = subset_sweep(args.sweep, args.prompts, args.seeds, Path(tmp))
        spec = load_sweep(sweep)
        models.resolve(spec.model, print)  # cached: neither way pays the build
        trials = [t.id for t in make_plan(spec).trials]
        print(f"{len(trials)} trials: {', '.join(trials)}", flush=True)
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        if args.inproc_engine:
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        print("scripts, one process per trial, sequential ...", flush=True)
        scripts_wall, results = run_scripts(sweep, trials, Path(tmp) / "adapters", env)
        print("inocray run ...", flush=True)
        inocray_wall, run = run_inocray(sweep, Path(tmp) / "run")

    print(f"\nmachine: {os.cpu_count()} cores, no GPU")
    print(f"trials: {len(trials)}   (+ the base model's elicitation, both ways)")
    print(f"scripts (one process per trial): {scripts_wall:7.1f} s  ({scripts_wall / len(trials):.1f} s per trial)")
    print(f"inocray run:                     {inocray_wall:7.1f} s  ({inocray_wall / len(trials):.1f} s per trial; "
          f"{run['trials_line']})")
    ratio = scripts_wall / inocray_wall
    print(f"speed-up {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else f'missed by {GOAL / ratio:.2f}x'})")
    print("script phases, mean per trial process:")
    for name, sec in phase_means(results).items():
        print(f"  {name:<26} {sec:5.1f} s")
    base = next(r for r in results if r["id"] == "base")
    print(f"  (base elicitation script: {base['exited'] - base['spawned']:.1f} s)")
    neutral_scripts = [r["rates"]["neutral"]["spanish"][0] for r in results if r["id"] != "base"]
    neutral_inocray = [r["rate"] for r in run["rows"] if r["stage"] == "trained" and r["context"] == "neutral"
                       and r["trait"] == "spanish"]
    if neutral_inocray:
        mean_scripts = sum(neutral_scripts) / len(neutral_scripts)
        print(f"sanity: mean Spanish rate in C0 after training, scripts {mean_scripts:.2f}, "
              f"inocray {sum(neutral_inocray) / len(neutral_inocray):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("trial", "base"):
        script_main(sys.argv[1:])
    else:
        main()
