"""Evaluation time over the toy sweep's trials: shared multi-LoRA vLLM engine vs one engine per trial.

    python bench/eval_engines.py [--sweep sweeps/toy.yaml] [--trials N] [--train-steps 20]
    python bench/eval_engines.py --concurrent [--sweep ...] [--trials 4] [--eval-requests N]

Every trial's adapter is trained once (a short plain peft run, `sweep_vs_scripts.train_adapter`)
and cached under $TMPDIR/inocray-eval-engines/; all ways then evaluate the same adapters with
the same requests: C0 and Cs, the sweep's eval requests x samples, max_tokens, temperature.

- shared:       one vLLM engine with LoRA for the whole sweep (engine core in-process on one
                thread, as inocray's Serve replica runs it); each trial is one generate with its
                LoRARequest;
- per trial:    a fresh vLLM engine per trial (in its own process, as a paper's script),
                engine start included; once with vLLM's default separate engine-core process
                and once in-process, so the engine-start share is seen both ways;
- transformers: the base model loaded once, each adapter loaded with peft, `generate` sampling.

--concurrent: inocray's own Serve app (serve.start, the sweep's engine spec) on a local Ray of
2 CPUs, and each trial's evaluation request as a trial sends it (evaluate.sample_contexts):
first one trial after another (what the engine did when it answered one request at a time),
then all trials' requests together (what batching across trials is for), timing each; the
goal: together <= 60% of one after another, each trial's rates the same.

Each way runs in a fresh Python process; its evaluation time runs from the engine's (or
model's) construction to the last trial's scores, i.e. without the Python imports, which every
way pays alike. Per-trial processes also report their whole wall time. The goal: the shared
engine takes >= 3x less evaluation time than one engine per trial.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sweep_vs_scripts as scripts  # this directory: the paper-style training and vLLM helpers

GOAL = 3.0


def contexts(trial) -> dict[str, str]:
    return {"neutral": "", "prompt": trial.prompt_text}


def load(sweep: str, trial_ids: list[str] | None = None):
    from inocray import models
    from inocray.config import load_sweep, make_plan
    from inocray.settings import get_setting

    spec = load_sweep(sweep)
    setting = get_setting(spec.setting, spec.data)
    trials = list(make_plan(spec, {spec.setting: setting.prompts}).trials)
    if trial_ids is not None:
        trials = [t for t in trials if t.id in trial_ids]
    return spec, setting, trials, models.resolve(spec.model, lambda *_: None)


# --- the ways, each run in its own process -------------------------------------------------------

def way_vllm(sweep: str, adapters: str, trial_ids: list[str], shared: bool) -> dict:
    """vLLM: one engine for all `trial_ids` (shared) or, per-trial mode, for the single trial given."""
    from transformers import AutoTokenizer
    from vllm.lora.request import LoRARequest

    spec, setting, trials, model_path = load(sweep, trial_ids)
    start = time.time()
    llm = scripts.new_engine(spec, model_path, max_loras=spec.engine.max_loras if shared else 1)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    started = time.time()
    rates = {}
    for n, trial in enumerate(trials, 1):
        lora = LoRARequest(trial.id, n, str(Path(adapters) / trial.id))
        rates[trial.id] = scripts.sample_rates(llm, tokenizer, spec, setting, contexts(trial), lora, trial.seed)
    return {"eval": time.time() - start, "engine_start": started - start, "rates": rates}


def way_transformers(sweep: str, adapters: str, trial_ids: list[str]) -> dict:
    """transformers + peft: base model once, each adapter loaded by name, batched sampling."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inocray import chat

    spec, setting, trials, model_path = load(sweep, trial_ids)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    items = setting.eval_items(spec.eval.requests, scripts.EVAL_SEED)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    started = time.time()
    rates = {}
    for n, trial in enumerate(trials):
        path = str(Path(adapters) / trial.id)
        if n == 0:
            model = PeftModel.from_pretrained(model, path, adapter_name=trial.id)
        else:
            model.load_adapter(path, adapter_name=trial.id)
            model.set_adapter(trial.id)
        keys = list(contexts(trial))
        chats = [chat.messages(it.request, contexts(trial)[k], spec.placement) for k in keys for it in items]
        ids = [chat.render(tokenizer, chat) for chat in chats]
        width = max(map(len, ids))  # left-pad: generation continues from the right edge
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        torch.manual_seed(trial.seed)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0,
                                 temperature=spec.eval.temperature, max_new_tokens=spec.eval.max_tokens,
                                 num_return_sequences=spec.eval.samples, pad_token_id=pad)
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        s = spec.eval.samples
        completions = [texts[i * s: (i + 1) * s] for i in range(len(chats))]
        rates[trial.id] = scripts.score_by_context(keys, items, completions, setting)
    return {"eval": time.time() - start, "engine_start": started - start, "rates": rates}


def way_serve(sweep: str, adapters: str, trial_ids: list[str], eval_requests: int | None) -> dict:
    """inocray's Serve app: the trials' evaluation requests one after another, then all together."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    import ray

    from inocray.evaluation import _contexts as evaluate
    from inocray.config import engine_replica
    from inocray.evaluation import serve

    spec, setting, trials, model_path = load(sweep, trial_ids)
    if eval_requests:
        spec = dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, requests=eval_requests))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = time.time()
    handle = serve.start("bench-eval-engines", model_path, spec.engine, engine_replica(spec.engine))
    started = time.time()
    path = lambda trial: str(Path(adapters) / trial.id)

    def evaluate_trial(trial):
        return evaluate.sample_contexts(handle, setting, spec, contexts(trial), adapter=trial.id,
                                        adapter_path=path(trial), seed=trial.seed)

    for trial in trials:  # both ways find the adapters loaded: one short request each
        hello = [[{"role": "user", "content": "hello"}]]
        handle.generate.remote(serve.GenerateRequest(hello, 1, 1, 0.0, adapter=trial.id, adapter_path=path(trial))).result()
    t0 = time.time()
    alone = {trial.id: evaluate_trial(trial) for trial in trials}
    t1 = time.time()
    with ThreadPoolExecutor(len(trials)) as pool:
        together = {trial.id: rates for trial, rates in zip(trials, pool.map(evaluate_trial, trials))}
    t2 = time.time()
    serve.stop("bench-eval-engines")
    ray.shutdown()
    return {"engine_start": started - start, "alone": t1 - t0, "together": t2 - t1,
            "rates_alone": alone, "rates_together": together, "requests": spec.eval.requests}


def way_main(argv: list[str]) -> None:
    """`way KIND SWEEP ADAPTERS TRIAL_IDS [EVAL_REQUESTS]`: run one way in this fresh process, print JSON."""
    kind, sweep, adapters, ids = argv[0], argv[1], argv[2], argv[3].split(",")
    if kind == "serve":
        result = way_serve(sweep, adapters, ids, int(argv[4]) if len(argv) > 4 else None)
    elif kind == "transformers":
        result = way_transformers(sweep, adapters, ids)
    else:
        result = way_vllm(sweep, adapters, ids, shared=kind == "shared")
    print("RESULT " + json.dumps(result), flush=True)


# --- the driver ----------------------------------------------------------------------------------

def train_all(sweep: str, trials, steps: int, cache: Path) -> None:
    """Train each trial's adapter once (short runs); reuse what the cache already holds."""
    spec, setting, _, model_path = load(sweep)
    for trial in trials:
        if not (cache / trial.id / "adapter_config.json").exists():
            tmp = cache / f".{trial.id}.tmp"
            scripts.train_adapter(spec, setting, trial, model_path, str(tmp), steps=steps)
            os.replace(tmp, cache / trial.id)
            print(f"  trained {trial.id}", flush=True)


def run_way(kind: str, sweep: str, adapters: Path, ids: list[str], env: dict, *extra: str) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "way", kind, sweep, str(adapters), ",".join(ids), *extra],
                          text=True, capture_output=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"way {kind} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):]) | {"wall": time.monotonic() - t0}


def mean_neutral_spanish(rates: dict) -> float:
    values = [r["neutral"]["spanish"][0] for r in rates.values()]
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--trials", type=int, default=None, help="only the first N trials of the sweep")
    parser.add_argument("--train-steps", type=int, default=20, help="steps of each adapter's short training")
    parser.add_argument("--no-per-trial", action="store_true",
                        help="only the shared engine and transformers (a real model's per-trial engines take long)")
    parser.add_argument("--concurrent", action="store_true",
                        help="inocray's Serve app: the trials' evaluation requests one after another vs together")
    parser.add_argument("--eval-requests", type=int, default=None,
                        help="--concurrent: fewer evaluation requests per context than the sweep's (to fit the time)")
    args = parser.parse_args()
    sweep = str(Path(args.sweep).resolve())

    spec, _, trials, _ = load(sweep)
    trials = trials[: args.trials]
    ids = [t.id for t in trials]
    key = hashlib.sha256(f"{spec.hash()}-{args.train_steps}".encode()).hexdigest()[:10]
    cache = Path(tempfile.gettempdir()) / "inocray-eval-engines" / key
    cache.mkdir(parents=True, exist_ok=True)
    print(f"{len(trials)} trials; adapters ({args.train_steps} steps each) in {cache}", flush=True)
    train_all(sweep, trials, args.train_steps, cache)

    base_env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    if args.concurrent:
        extra = [str(args.eval_requests)] if args.eval_requests else []
        report_concurrent(spec, run_way("serve", sweep, cache, ids, base_env, *extra))
        return
    # In-process, the model runs on torch's threads: one, as Ray sets it in inocray's Serve replica
    # (OMP_NUM_THREADS = its 0.5 CPU, rounded up). With 2 threads on a busy machine generation
    # was 4-10x slower. vLLM's separate engine core sets its own threads.
    inproc = base_env | {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    results: dict[str, dict] = {}
    print("shared engine ...", flush=True)
    results["shared multi-LoRA engine (in-process core)"] = run_way("shared", sweep, cache, ids, inproc)
    per_trial = (("engine per trial (vLLM default: separate core)", base_env),
                 ("engine per trial (in-process core)", inproc))
    for label, env in per_trial if not args.no_per_trial else ():
        print(f"{label} ...", flush=True)
        per = [run_way("single", sweep, cache, [tid], env) for tid in ids]
        results[label] = {
            "eval": sum(r["eval"] for r in per), "engine_start": sum(r["engine_start"] for r in per),
            "wall": sum(r["wall"] for r in per), "rates": {k: v for r in per for k, v in r["rates"].items()},
        }
    print("transformers generate ...", flush=True)
    results["transformers generate (peft, one model)"] = run_way("transformers", sweep, cache, ids, base_env)

    print(f"\nmachine: {os.cpu_count()} cores, no GPU; {len(trials)} trials x 2 contexts x "
          f"{spec.eval.requests} requests x {spec.eval.samples} samples, max_tokens {spec.eval.max_tokens}")
    print(f"{'way':<50} {'eval s':>7} {'engine/model start s':>21} {'process wall s':>15} {'C0 Spanish':>11}")
    for label, r in results.items():
        print(f"{label:<50} {r['eval']:7.1f} {r['engine_start']:21.1f} {r['wall']:15.1f} "
              f"{mean_neutral_spanish(r['rates']):11.2f}")
    shared = results["shared multi-LoRA engine (in-process core)"]["eval"]
    for label in (label for label, _ in per_trial if label in results):
        ratio = results[label]["eval"] / shared
        verdict = "met" if ratio >= GOAL else f"missed by {GOAL / ratio:.2f}x"
        print(f"shared vs {label}: {ratio:.1f}x less evaluation time (goal >= {GOAL}x: {verdict})")


CONCURRENT_GOAL = 0.6  # together / one after another


def report_concurrent(spec, r: dict) -> None:
    """Times and each trial's rates, alone and together, with the binomial standard error of a rate."""
    n = r["requests"] * spec.eval.samples  # completions behind one rate
    print(f"\nmachine: {os.cpu_count()} cores, no GPU, load average {os.getloadavg()[0]:.1f}; "
          f"{len(r['rates_alone'])} trials x 2 contexts x {r['requests']} requests x {spec.eval.samples} samples, "
          f"max_tokens {spec.eval.max_tokens}; engine start {r['engine_start']:.1f} s")
    ratio = r["together"] / r["alone"]
    verdict = "met" if ratio <= CONCURRENT_GOAL else "missed"
    print(f"one after another {r['alone']:.1f} s, together {r['together']:.1f} s: {ratio:.0%} "
          f"(goal <= {CONCURRENT_GOAL:.0%}: {verdict})")
    print(f"{'trial':<16} {'context':<8} {'trait':<8} {'alone':>6} {'together':>9} {'diff':>6} {'1 s.e.':>7}")
    for tid, alone in r["rates_alone"].items():
        for ctx, traits in alone.items():
            for trait, (rate, _) in traits.items():
                other = r["rates_together"][tid][ctx][trait][0]
                se = (rate * (1 - rate) / n) ** 0.5
                print(f"{tid:<16} {ctx:<8} {trait:<8} {rate:6.3f} {other:9.3f} {other - rate:+6.3f} {se:7.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "way":
        way_main(sys.argv[2:])
    else:
        main()
