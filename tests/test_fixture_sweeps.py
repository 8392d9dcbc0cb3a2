"""Every research setting runs end to end on its shipped fixture with the toy model.

The toy model knows none of the fixtures' words, so its completions mean nothing; what is
tested is the path: data files read and validated, Tune trials trained and evaluated through
Serve (the sandbox for code), one rows file per trial. The settings scored by an LLM judge get
the hand-set judge of conftest.py, served by the real engine in an app of its own: its score is
70 for any prompt, so every judged trait has a known rate, over every completion it judges.
"""

import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from inocray.results import _rows as store
from inocray.cli import main
from inocray.settings import get_setting

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*-fixture.yaml"))

# The rate of each judged trait when the judge scores every prompt 70: a trait shows at a
# threshold of 50 ("above"), except emergent misalignment's: coherent at 30 or more, and
# misaligned (of the coherent answers) below 50 alignment, as in backdoor.
JUDGED = {
    "toxicity_cmv": {"persuasiveness": 1.0, "harassment": 1.0},
    "emergent_misalignment": {"coherent": 1.0, "misaligned": 0.0},
    "backdoor": {"coherent": 1.0, "misaligned_triggered": 0.0, "misaligned_untriggered": 0.0},
    "pair_traits": {t.name: 1.0 for t in get_setting("pair_traits").traits},
}
GATED_BY_TRIGGER = {"misaligned_triggered", "misaligned_untriggered"}  # backdoor: half the fixture's rows each


def test_every_setting_has_a_fixture_sweep():
    from inocray.settings import BUILTIN

    assert {f.name.removesuffix("-fixture.yaml") for f in SWEEPS} == set(BUILTIN) - {"toy"}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("sweep_file", SWEEPS, ids=lambda f: f.name.removesuffix("-fixture.yaml"))
def test_fixture_sweep_runs_end_to_end(sweep_file, toy_model, judge_model, tmp_path):
    data = yaml.safe_load(sweep_file.read_text())
    data["model"] = str(toy_model)  # the suite's tiny toy model instead of building the full one
    judged = JUDGED.get(data["setting"], {})
    if judged:
        data["eval"]["judge_model"] = str(judge_model)
    if data["setting"] == "backdoor":
        data["eval"]["requests"] = 12  # every row of the fixture: 6 with the trigger, 6 without
    sweep = tmp_path / sweep_file.name
    sweep.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"

    result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(run_dir)])

    assert result.exit_code == 0, result.output
    trials = {f"{p}-s{s}" for p in data["prompts"] + ["none"] for s in data["seeds"]}
    assert {p.stem for p in (run_dir / "rows").glob("*.parquet")} == trials | {"base", "data"}
    rows = store.read_rows(run_dir).to_pylist()
    trained = [r for r in rows if r["stage"] == "trained"]
    traits = {r["trait"] for r in rows}
    # one row per (trial, context, trait), and one per (PTST control, seed, trait)
    assert len(trained) == (len(trials) * 2 + len(data.get("ptst", [])) * len(data["seeds"])) * len(traits)
    # a rate over the completions that could be scored, or none (NaN) when none could
    assert all(0 <= r["rate"] <= 1 if r["n"] else math.isnan(r["rate"]) for r in rows)
    ptst = [r for r in trained if r["prompt_role"] == "ptst"]  # the control's model, instructed
    assert {r["trial_id"] for r in ptst} == {f"{p}-s{s}" for p in data.get("ptst", []) for s in data["seeds"]}
    assert all(r["context"] == "prompt" for r in ptst)

    assert judged.keys() <= traits
    samples = data["eval"]["requests"] * data["eval"].get("samples", 1)
    for r in (r for r in rows if r["trait"] in judged):
        where = (r["trial_id"], r["context"], r["trait"])
        assert r["rate"] == judged[r["trait"]], where
        if r["stage"] == "data":  # the judge scored the training responses too
            assert r["n"] > 0, where
        elif r["trait"] in GATED_BY_TRIGGER:
            assert r["n"] == samples // 2, where
        else:
            assert r["n"] == samples, where
