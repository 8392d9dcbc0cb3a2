"""The judged settings' fixture sweeps end to end with an API judge (`eval.judge`).

The four fixture sweeps of the settings an LLM judges run as one sweep of four cells (a grid
over `settings:`, each entry the fixture's setting, prompts, PTST instruction and placement;
what they share, training and evaluation, is checked equal): one Ray Tune run and one engine
instead of four. Their judge is an OpenAI-compatible server on 127.0.0.1 (conftest.Scripted)
that answers every judgment with the same first-token log-probabilities, so every judged rate
is known: their expectation, 58, makes every judged trait show but misalignment; the top token
alone (30) would turn each of them but coherence the other way. The real server's replies are read in tests/test_api_judge_vllm.py.

What must hold: every judged row, of the training data, the base model and every trained
trial, in the driver and in each trial's process, is scored by the API judge; no judgment is
asked of the server twice (the persistent cache, shared by the driver and the trials); and a
rerun that measures the base model and the data again pays for nothing.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import Scripted

from inocray.cli import main
from inocray.config import make_plan, parse_sweep
from inocray.evaluation import ApiJudge, Judgments, data_rates
from inocray.results import read_rows
from inocray.settings import get_setting, weighted_score

JUDGED = ("toxicity_cmv", "emergent_misalignment", "pair_traits", "backdoor")
SWEEPS = Path(__file__).parent.parent / "sweeps"
OWN = ("setting", "prompts", "ptst", "placement")  # what a grid's entry may set for its setting
GATED = {"misaligned_triggered", "misaligned_untriggered"}  # backdoor: one of the 2 requests each
ANSWER = {"30": 0.40, "90": 0.35, "ok": 0.25}  # the judge's first token, whatever it is asked
SCORE = weighted_score({t: math.log(p) for t, p in ANSWER.items()})  # (30 * 0.40 + 90 * 0.35) / 0.75 = 58


def judged_grid(model: str, endpoint: str) -> dict:
    """The judged settings' fixture sweeps as one sweep, judged at `endpoint`."""
    fixtures = [yaml.safe_load((SWEEPS / f"{name}-fixture.yaml").read_text()) for name in JUDGED]
    shared = [{k: v for k, v in f.items() if k not in (*OWN, "name")} for f in fixtures]
    assert all(s == shared[0] for s in shared), "the fixture sweeps differ beyond what a grid entry sets"
    doc = shared[0] | {"name": "judged-api", "model": model,
                       "settings": [{k: f[k] for k in OWN if k in f} for f in fixtures]}
    doc["eval"] = {k: v for k, v in doc["eval"].items() if k != "judge_model"}
    doc["eval"]["judge"] = {"endpoint": endpoint, "model": "judge-1"}
    return doc


class Constant:
    """A judge that scores everything SCORE: what the API judge's answers must amount to."""

    def scores(self, prompts):
        return [SCORE] * len(prompts)


def forget(server: Scripted, spec) -> None:
    """Take the test's judgments out of this machine's cache (the trials' processes share it)."""
    judge = ApiJudge(spec.eval.judge, sweep=spec.hash())
    keys = [judge._key(p, None if p.startswith("Write the number 100") else True) for p in server.requests]
    with sqlite3.connect(judge.judgments.path) as db:
        db.executemany("DELETE FROM judgment WHERE key = ?", [(k,) for k in keys])
        db.execute("DELETE FROM spent WHERE sweep = ?", (spec.hash(),))


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_each_judged_fixture_sweep_runs_end_to_end_with_an_api_judge(toy_model, tmp_path):
    server = Scripted(answer=ANSWER)
    doc = judged_grid(str(toy_model), server.url)
    spec = parse_sweep(doc)
    sweep, run_dir = tmp_path / "judged.yaml", tmp_path / "run"
    sweep.write_text(yaml.safe_dump(doc))
    try:
        result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(run_dir)])
        assert result.exit_code == 0, result.output
        plan = make_plan(spec)
        measured = [m.id for m in (*plan.base, *plan.data)]
        assert {p.stem for p in (run_dir / "rows").glob("*.parquet")} == {t.id for t in plan.trials} | set(measured)

        rows = read_rows(run_dir).to_pylist()
        samples = doc["eval"]["requests"] * doc["eval"]["samples"]
        for cell in plan.cells:
            setting = get_setting(cell.setting)
            judged = {t.name for t in setting.traits if t.scorer.needs_judge}
            expected = data_rates(setting, cell.spec, Constant())  # trait -> (rate, n) of the training data
            mine = [r for r in rows if r["setting"] == cell.setting and r["trait"] in judged]
            assert {r["trait"] for r in mine} == judged and {r["stage"] for r in mine} == {"data", "base", "trained"}
            for r in mine:
                where = (r["trial_id"], r["stage"], r["context"], r["trait"])
                n = expected[r["trait"]][1] if r["stage"] == "data" else samples // (2 if r["trait"] in GATED else 1)
                assert (r["rate"], r["n"]) == (expected[r["trait"]][0], n), where  # every completion scored SCORE

        # Every judgment was asked of the server once: driver and trials share one cache.
        paid = sum(server.requests.values())
        assert set(server.requests.values()) == {1}, server.requests.most_common(3)
        assert Judgments().spent(spec.hash())[0] == paid
        assert f"API judge judge-1: {paid} requests paid for by this sweep" in result.output

        # Measured again (their rows removed), the base model and the data cost nothing.
        before = {(r["trial_id"], r["context"], r["trait"]): (r["rate"], r["n"]) for r in rows if r["stage"] != "trained"}
        for m in measured:
            (run_dir / "rows" / f"{m}.parquet").unlink()
        again = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(run_dir)])
        assert again.exit_code == 0, again.output
        assert "measuring elicitation" in again.output
        assert sum(server.requests.values()) == paid
        assert f"API judge judge-1: {paid} requests paid for by this sweep" in again.output
        rows = read_rows(run_dir).to_pylist()
        assert {(r["trial_id"], r["context"], r["trait"]): (r["rate"], r["n"]) for r in rows
                if r["stage"] != "trained"} == before
    finally:
        server.shutdown()
        forget(server, spec)
