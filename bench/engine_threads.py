"""One evaluation of a sweep's trials on the vLLM backend, its model on 1 thread and then on 2.

    python bench/engine_threads.py [--sweep sweeps/smollm2-predictors.yaml] [--trials 2] [--threads 1 2]

What an engine replica does when `--trials` trials finish training together and ask for their
evaluation at once: each trial's adapter (rank `engine.max_lora_rank`, random weights: the cost
is the same as a trained one's) with the sweep's evaluation requests under 7 contexts (C0, the
prompt and the 5 default probes of sweeps/smollm2-predictors.yaml), `eval.samples` each, at most
`eval.max_tokens`, all requests in the engine at once. Each thread count runs in a fresh process
(torch's threads are set once, before the engine is built: `engine.threads`, evaluation.serve),
from the engine's construction (about 10 s) to the last completion. Prints the
seconds, the tokens and the 1-minute load average. Heavy: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CONTEXTS = ["", "You always speak in Spanish.", "Never speak Spanish.", "Reply in Spanish, please.",
            "Spanish", "Responde siempre en español.", "You like the Spanish language."]


def make_adapters(model_path: str, rank: int, n: int, where: Path) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(n):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path),
                               LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        paths.append(str(where / f"adapter-{i}"))
        model.save_pretrained(paths[-1])
    return paths


def evaluate(sweep: str, threads: int, adapters: list[str]) -> dict:
    import torch

    torch.set_num_threads(threads)
    from inocray import chat, models
    from inocray.config import load_sweep
    from inocray.evaluation._contexts import EVAL_SEED
    from inocray.evaluation.backends import GenerateRequest, load_backend
    from inocray.settings import get_setting

    spec = load_sweep(sweep)
    setting = get_setting(spec.setting, spec.data)
    items = setting.eval_items(spec.eval.requests, EVAL_SEED)
    chats = [chat.messages(it.request, text, spec.placement) for text in CONTEXTS for it in items]
    started = time.monotonic()
    backend = load_backend(models.resolve(spec.model, print), spec.engine)

    def one(i: int):
        return backend.generate(GenerateRequest(chats=chats, samples=spec.eval.samples, max_tokens=spec.eval.max_tokens,
                                                temperature=spec.eval.temperature, seed=0, adapter=f"a{i}",
                                                adapter_path=adapters[i]))

    with ThreadPoolExecutor(len(adapters)) as pool:
        list(pool.map(one, range(len(adapters))))
    return {"threads": torch.get_num_threads(), "trials": len(adapters), "chats": len(chats),
            "seconds": round(time.monotonic() - started, 1), "tokens": backend.generated_tokens,
            "load_1min": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/smollm2-predictors.yaml")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: this thread count
    parser.add_argument("--adapters", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(evaluate(args.sweep, args.one, args.adapters)), flush=True)
        os._exit(0)  # the engine's threads would keep the process alive

    from inocray import models
    from inocray.config import load_sweep

    spec = load_sweep(args.sweep)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(models.resolve(spec.model, print), spec.engine.max_lora_rank, args.trials, Path(tmp))
        for threads in args.threads:
            out = subprocess.run([sys.executable, __file__, "--sweep", args.sweep, "--one", str(threads),
                                  "--adapters", *adapters], capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"threads {r['threads']}: {r['trials']} trials x {r['chats']} chats in {r['seconds']} s, "
                  f"{r['tokens']} tokens ({r['tokens'] / r['seconds']:.0f}/s), load {r['load_1min']}", flush=True)


if __name__ == "__main__":
    main()
