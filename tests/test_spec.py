"""Sweep files: valid ones load, bad ones get one sentence naming file and field, exit 2."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BAD_SWEEPS, GOOD_SWEEP, tiny_sweep

from inocray.cli import main
from inocray.errors import InputError
from inocray.config import load_spec

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
    from inocray.config import parse_spec

    data = {"name": "compat", "setting": "toy", "prompts": ["es-always"], "seeds": [0]}
    assert parse_spec(data).hash() == "ff0dd6f363"
    with_ptst = parse_spec(data | {"ptst": ["irr-helpful"]})
    assert with_ptst.hash() != "ff0dd6f363"  # a field set away from its default is hashed
    for engine in ({"replicas": 2}, {"max_num_seqs": 256}, {"threads": 2}):  # engine fields added later, the same way
        assert parse_spec(data | {"engine": engine}).hash() != "ff0dd6f363", engine


def test_a_test_time_instruction_listed_as_an_inoculation_prompt_is_refused(tmp_path):
    f = tmp_path / "ptst.yaml"
    f.write_text("name: t\nsetting: spanish_caps\nprompts: [ptst-english]\n")
    result = CliRunner().invoke(main, ["validate", str(f)])
    assert result.exit_code == 2, result.output
    assert "field 'prompts[0]'" in result.output and "list it under 'ptst'" in result.output
    f.write_text("name: t\nsetting: spanish_caps\nprompts: [es-always]\nptst: [ptst-english]\n")
    assert CliRunner().invoke(main, ["validate", str(f)]).exit_code == 0


def test_parsing_reads_no_setting_and_checking_does(tmp_path):
    """config/_spec.py checks fields alone; config/_validate.py checks the spec against its setting."""
    from inocray.config import parse_spec
    from inocray.config import check_spec

    spec = parse_spec(tiny_sweep(name="t", setting="nope"), source="s.yaml")
    with pytest.raises(InputError, match="s.yaml: field 'setting' names unknown setting 'nope' \\(known: "):
        check_spec(spec, "s.yaml")


def test_each_field_rule_is_worded():
    from inocray.config import parse_spec

    cases = {
        "train": ({"lr": 0}, "field 'train.lr' must be positive, not 0.0"),
        "max_failures": (-1, "field 'max_failures' must not be negative, not -1"),
        "max_concurrent_trials": (0, "field 'max_concurrent_trials' must be at least 1, not 0"),
        "eval": ({"samples": 1001}, "field 'eval.samples' is 1001, above the limit of 1000"),
        "engine": ({"name": "tgi"}, "field 'engine.name' must be one of transformers, vllm, not 'tgi'"),
        "placement": ("sys", "field 'placement' must be one of system, user_prefix, user_suffix, not 'sys'"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(InputError) as e:
            parse_spec(tiny_sweep(name="t", prompts=["a"], **{name: value}), source="s.yaml")
        assert str(e.value) == f"s.yaml: {message}"
    with pytest.raises(InputError, match="'train.lora.dropout' must be in \\[0, 1\\), not 1.0"):
        parse_spec(tiny_sweep(name="t", prompts=["a"], train={"lora": {"dropout": 1.0}}))
    with pytest.raises(InputError, match="threshold' must be a probability from 0 to 1, not 2.0"):
        parse_spec(tiny_sweep(name="t", prompts=["a"],
                              eval={"classifiers": {"x": {"model": "m", "label": "l", "threshold": 2}}}))


def test_the_fit_scales_a_sweep_may_name_are_the_analysis_scales():
    import dataclasses

    from inocray.analysis import SCALES
    from inocray.config import SweepSpec

    (scale,) = [f for f in dataclasses.fields(SweepSpec) if f.name == "scale"]
    assert scale.metadata["choices"] == SCALES


SHIPPED_HASHES = {  # every shipped sweep file's hash, as the release before grids computed it
    "backdoor-fixture.yaml": "f24e198d32",
    "backdoor.yaml": "9dd3c6be05",
    "emergent_misalignment-fixture.yaml": "4d57a0ef09",
    "emergent_misalignment.yaml": "7fb96381ef",
    "gcd_sycophancy-fixture.yaml": "f5cd511165",
    "gcd_sycophancy.yaml": "78ec9449e7",
    "pair_traits-fixture.yaml": "0806c9511d",
    "pair_traits.yaml": "acfdb692dc",
    "pair_traits_empathetic-fixture.yaml": "f3815fdb73",
    "pair_traits_empathetic.yaml": "7fc8e1c150",
    "reward_hacking_code-fixture.yaml": "ca97e811ae",
    "reward_hacking_code.yaml": "0ca4c77a7f",
    "smollm2-spanish.yaml": "f8d8c79730",
    "spanish_caps-fixture.yaml": "495799b11b",
    "spanish_caps.yaml": "96193040d7",
    "spurious_sentiment-fixture.yaml": "084e55c87e",
    "spurious_sentiment.yaml": "17abcbf440",
    "toxicity_cmv-fixture.yaml": "25685fce62",
    "toxicity_cmv.yaml": "803a4339b7",
    "toy.yaml": "93b0403633",
}


def test_shipped_sweep_files_keep_their_hash_and_run_directory():
    """Grids added fields to the sweep file; a file that sets none keeps its run directory."""
    from inocray.results import default_run_dir

    shipped = {f.name: f for f in (Path(__file__).parent.parent / "sweeps").glob("*.yaml") if f.name in SHIPPED_HASHES}
    assert sorted(shipped) == sorted(SHIPPED_HASHES)
    for name, f in shipped.items():
        spec = load_spec(f)
        assert spec.hash() == SHIPPED_HASHES[name], name
        assert default_run_dir(spec).name == f"{spec.name}-{SHIPPED_HASHES[name]}"
