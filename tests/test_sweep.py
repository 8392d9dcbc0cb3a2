"""A real sweep at tiny scale: Tune grid of 2 trials, Train+DeepSpeed, Serve+vLLM, Parquet."""

import math
import time

import pytest
from conftest import Page, Scraper, assert_png, decoded, tiny_sweep

from inocray.results import _rows as store
from inocray.analysis import write_report
from inocray.config import make_plan, parse_sweep
from inocray.run import summarize
from inocray.run import run_sweep
from inocray.run._engines import app_name


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_two_trial_sweep_writes_rows_and_resumes_without_repeating(toy_model, tmp_path):
    spec = parse_sweep(
        tiny_sweep(
            model=str(toy_model),
            seeds=[3],
            max_concurrent_trials=4,  # more than fit beside the engine on 2 CPUs
            train={"steps": 10, "checkpoint_every": 5},
            eval={"logprob_examples": 8},
            probes=["keyword-spanish", "placements"],
        )
    )
    lines = []
    scraper = Scraper()  # the sweep's Ray metrics, read back as the dashboard's Prometheus would
    scraper.start()
    try:
        run_dir = run_sweep(spec, tmp_path / "run", echo=lines.append)
        deadline = time.monotonic() + 60
        while scraper.total("ray_inocray_trials_finished_total", sweep=spec.hash()) < 2 and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        scraper.stop.set()
        scraper.join()
    # The resource check before Tune: engine 0.5 CPU, each trial 0.01 + 0.49, on 2 CPUs.
    assert any("holds the engine and 3 trial(s) at once" in line for line in lines), lines
    # Metrics: trials finished (counted on the driver), training loss, engine tokens per second.
    assert scraper.total("ray_inocray_trials_finished_total", sweep=spec.hash()) == 2
    loss = {dict(tags)["trial"]: v for tags, v in scraper.values("ray_inocray_train_loss").items()}
    assert all(math.isfinite(loss[t]) and loss[t] > 0 for t in ("es-always-s3", "none-s3")), loss
    app = app_name(make_plan(spec), spec.model, str(tmp_path / "run"))
    speed = scraper.values("ray_inocray_eval_tokens_per_second", app=app)
    assert speed and all(v > 0 for v in speed.values()), speed

    rows = store.read_rows(run_dir).to_pylist()
    trained = [r for r in rows if r["stage"] == "trained"]
    assert sorted({r["trial_id"] for r in trained}) == ["es-always-s3", "none-s3"]
    # one row per (trial, context, trait): C0, Cs and the leak probes (the control: the fixed one)
    keys = [(r["trial_id"], r["context"], r["trait"]) for r in trained]
    probes = {"probe:keyword-spanish", "probe:placement:user_prefix", "probe:placement:user_suffix"}
    assert {c for t, c, _ in keys if t == "es-always-s3"} == {"neutral", "prompt"} | probes
    assert {c for t, c, _ in keys if t == "none-s3"} == {"neutral", "prompt", "probe:keyword-spanish"}
    assert len(keys) == len(set(keys)) == (5 + 3) * 2
    assert all(r["n"] == 8 * 2 and 0 <= r["rate"] <= 1 and r["sweep_hash"] == spec.hash() for r in trained)
    # The effect the sweep measures: trained with the strongest prompt, the model keeps less
    # Spanish in the neutral context than the no-prompt control does.
    neutral = {r["trial_id"]: r["rate"] for r in trained if (r["context"], r["trait"]) == ("neutral", "spanish")}
    assert neutral["es-always-s3"] < neutral["none-s3"], neutral
    base = {(r["prompt_id"], r["context"], r["trait"]) for r in rows if r["stage"] == "base"}
    assert base == {(p, c, t) for p, c in [("none", "neutral"), ("es-always", "prompt")] for t in ("spanish", "caps")}
    # The base rows carry each prompt's logprob elicitation: 0 for C0, positive for es-always
    # (its Spanish makes the Spanish training responses more likely).
    logprob = {r["prompt_id"]: (r["logprob"], r["logprob_low"], r["logprob_high"]) for r in rows if r["stage"] == "base"}
    assert logprob["none"] == (0.0, 0.0, 0.0) and 0 < logprob["es-always"][1] <= logprob["es-always"][0]
    star = {r["trait"]: r["rate"] for r in rows if r["stage"] == "data"}
    assert star == {"spanish": 1.0, "caps": 1.0}  # the training responses are all Spanish CAPS
    assert any("[  2/2]" in line for line in lines)
    # The checkpoint at step 5 was evaluated too (not fitted); each trial has its own log.
    snapshots = {(r["trial_id"], r["step"], r["context"]) for r in rows if r["stage"] == "checkpoint"}
    assert snapshots == {(t, 5, c) for t in ("es-always-s3", "none-s3") for c in ("neutral", "prompt")}
    assert {r["step"] for r in trained} == {10}
    for trial in ("es-always-s3", "none-s3"):
        log = (run_dir / "logs" / f"{trial}.log").read_text()
        assert "evaluated step 5" in log and "evaluated step 10" in log

    # Rerunning into the same directory repeats nothing.
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "rows").iterdir()}
    lines.clear()
    run_sweep(spec, run_dir, echo=lines.append)
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "rows").iterdir()} == before
    assert "2 trials, 2 already done" in lines[0]

    # The end of `inocray run`: the fit is printed and saved with its plots.
    lines.clear()
    fit = summarize(run_dir, spec, echo=lines.append)
    assert {t.trait for t in fit.traits} == {"spanish", "caps"}
    assert (run_dir / "analysis.csv").exists() and (run_dir / "elicitation-spanish.png").read_bytes()[:4] == b"\x89PNG"
    assert any(line.startswith("spanish, neutral context after training: no-prompt control") for line in lines)
    assert any(line.startswith("leak probes:") for line in lines) and any("keyword-spanish" in line for line in lines)

    # The HTML report of this run embeds every plot as a PNG that decodes.
    page = Page()
    page.feed(write_report(run_dir, n_boot=100).read_text())
    assert len(page.images) >= 3 + 2  # and the trait over training, one plot per trait
    assert any("over training" in alt for alt in page.alts)
    for src in page.images:
        assert_png(decoded(src))


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_full_fine_tuning_with_a_user_prefix_prompt_pool(toy_model, tmp_path):
    """Every weight trains; each trial's model gets its own engine; the prompt is a paraphrase pool."""
    spec = parse_sweep(
        tiny_sweep(
            name="full",
            model=str(toy_model),
            placement="user_prefix",
            prompts=["pool"],
            custom_prompts={"pool": ["You always speak in Spanish.", "Respond only in Spanish."]},
            seeds=[1],
            train={"method": "full", "zero_stage": 3, "steps": 6, "lr": 1e-4},
            eval={"requests": 4},
        )
    )
    run_dir = run_sweep(spec, tmp_path / "run", echo=lambda *a: None)
    rows = store.read_rows(run_dir).to_pylist()
    trained = {(r["trial_id"], r["context"], r["trait"]): r for r in rows if r["stage"] == "trained"}
    assert len(trained) == 2 * 2 * 2 and all(r["n"] == 4 * 2 for r in trained.values())
    assert trained[("pool-s1", "prompt", "spanish")]["prompt_text"] == "You always speak in Spanish."
    model = run_dir / "adapters" / "pool-s1"
    assert (model / "config.json").is_file() and not (model / "adapter_config.json").exists()
