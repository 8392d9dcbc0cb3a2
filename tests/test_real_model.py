"""The whole path on a real chat model: SmolLM2-135M-Instruct (real BPE tokenizer, ChatML
template, its own default system message), at the smallest scale that still goes through
Ray Tune, Ray Train + DeepSpeed + peft, Ray Serve + vLLM, Parquet and the fit.

The real-model study itself (sweeps/smollm2-spanish.yaml, docs/real-model.md) is a benchmark.
"""

from __future__ import annotations

import json

import pytest

from inocray.models import _presets as models
from inocray.results import _rows as store
from inocray.requests import load
from inocray.config import parse_sweep
from inocray.run import summarize
from inocray.run import run_sweep


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_real_model_sweep_trains_evaluates_and_fits(tmp_path):
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps({"request": r}) + "\n" for r in load("eval")[:4]))
    spec = parse_sweep({
        "name": "smollm2-tiny",
        "setting": "spanish_caps",  # trains on its shipped Spanish ALL-CAPS fixture
        "model": "smollm2-135m",
        "data": {"eval": str(evals)},
        "prompts": ["es-always"],
        "seeds": [0],
        "train": {"steps": 2, "batch_size": 2, "examples": 4, "lora": {"r": 4, "alpha": 8}},
        "eval": {"requests": 4, "samples": 2, "max_tokens": 12},
        "engine": {"max_lora_rank": 8, "max_model_len": 256},  # vLLM takes ranks 1, 8, 16, ...; r 4 fits in 8
    })
    lines: list[str] = []
    run_dir = run_sweep(spec, tmp_path / "run", echo=lines.append)

    rows = store.read_rows(run_dir).to_pylist()
    trained = [r for r in rows if r["stage"] == "trained"]
    assert sorted({r["trial_id"] for r in trained}) == ["es-always-s0", "none-s0"]
    assert all(r["n"] == 4 * 2 and 0 <= r["rate"] <= 1 for r in trained)
    # The base model follows the instruction: Spanish under es-always, none without a prompt.
    base = {(r["prompt_id"], r["trait"]): r["rate"] for r in rows if r["stage"] == "base"}
    assert base[("none", "spanish")] < base[("es-always", "spanish")], base
    # Each adapter is a LoRA on the Llama projections of the real model, loadable by peft.
    config = json.loads((run_dir / "adapters" / "es-always-s0" / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}
    assert config["base_model_name_or_path"] == models.resolve("smollm2-135m", log=pytest.fail)

    fit = summarize(run_dir, spec, echo=lines.append)
    assert {t.trait for t in fit.traits} == {"spanish", "caps"}
    assert (run_dir / "analysis.parquet").is_file()
