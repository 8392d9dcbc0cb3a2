"""Sweep files: valid ones load, bad ones get one sentence naming file and field, exit 2."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BAD_SWEEPS, GOOD_SWEEP

from inocray.cli import main
from inocray.spec import load_spec

def test_good_sweep_loads(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(GOOD_SWEEP)
    spec = load_spec(f)
    assert spec.train.lr == 1e-3 and spec.train.zero_stage == 2 and spec.seeds == [0, 1]
    assert spec.hash() == load_spec(f).hash()
    f.write_text(GOOD_SWEEP.replace("steps: 10", "steps: 11"))
    assert load_spec(f).hash() != spec.hash()


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
@pytest.mark.parametrize("cmd", ["validate", "run"])
def test_bad_sweep_is_one_sentence_exit_2_and_no_run_dir(tmp_path, case, cmd):
    text, expected = BAD_SWEEPS[case]
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    run_dir = tmp_path / "run"
    args = [cmd, str(f)] + (["--run-dir", str(run_dir)] if cmd == "run" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(f) in lines[0] and expected in lines[0]
    assert not run_dir.exists()


def test_missing_sweep_file(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "no such sweep file" in result.output


def test_shipped_sweeps_validate():
    """Runnable here: toy and fixture sweeps; the papers' sweeps name a model the user supplies."""
    for f in sorted(Path(__file__).parent.parent.glob("sweeps/*.yaml")):
        runnable = "model: toy" in f.read_text()
        result = CliRunner().invoke(main, ["validate", str(f)] + ([] if runnable else ["--no-model-check"]))
        assert result.exit_code == 0, (f, result.output)


def test_fields_added_later_keep_the_hash_of_older_run_directories():
    """A run directory made before `ptst` and `eval.classifiers` existed keeps its name and can
    be resumed: ff0dd6f363 is this spec's hash as the first release computed it."""
    from inocray.spec import parse_spec

    data = {"name": "compat", "setting": "toy", "prompts": ["es-always"], "seeds": [0]}
    assert parse_spec(data, check_model=False).hash() == "ff0dd6f363"
    with_ptst = parse_spec(data | {"ptst": ["irr-helpful"]}, check_model=False)
    assert with_ptst.hash() != "ff0dd6f363"  # a field set away from its default is hashed
