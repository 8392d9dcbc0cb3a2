"""A run directory is input, not code: resuming it imports no setting module it names on its own."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from inocray.cli import main

EVIL = """import pathlib
from inocray.settings import get_setting, register
pathlib.Path({marker!r}).write_text("ran")


@register("evil_{tag}")
def evil(data=None):
    return get_setting("toy", data)
"""


@pytest.fixture
def run_dir(tmp_path, monkeypatch, tiny_sweep):
    """A run directory whose sweep.json names a setting file that leaves a marker when imported."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("inocray.run.run_sweep", _no_run)
    marker = tmp_path / "marker"
    evil = tmp_path / f"evil_{tmp_path.name}.py"
    evil.write_text(EVIL.format(marker=str(marker), tag=tmp_path.name))
    d = tmp_path / "run"
    d.mkdir()
    spec = tiny_sweep(setting=str(evil))
    (d / "sweep.json").write_text(json.dumps({"hash": "0123456789", "spec": spec}))
    return d, marker, spec


def _no_run(*args, **kwargs):
    raise AssertionError("the sweep would have run")


def test_resume_does_not_import_a_setting_module_the_run_directory_names(run_dir):
    d, marker, _ = run_dir
    result = CliRunner().invoke(main, ["run", "--resume", str(d)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "names the setting module" in result.output and "--trust" in result.output, result.output
    assert not marker.exists()


def test_resume_imports_it_when_the_users_own_sweep_file_names_it_or_with_trust(run_dir, tmp_path):
    d, marker, spec = run_dir
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(spec))
    for args in (["run", str(own), "--resume", str(d)], ["run", "--resume", str(d), "--trust"]):
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, AssertionError), (args, result.output)  # got as far as running
        assert marker.exists()  # imported: the user chose this code


def test_resume_of_a_builtin_setting_needs_no_trust(tmp_path, monkeypatch, tiny_sweep):
    from inocray.config import parse_sweep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("inocray.run.run_sweep", _no_run)
    d = tmp_path / "run"
    d.mkdir()
    spec = parse_sweep(tiny_sweep(), check_model=False)
    (d / "sweep.json").write_text(json.dumps({"hash": spec.hash(), "spec": spec.record()}))
    result = CliRunner().invoke(main, ["run", "--resume", str(d)])
    assert isinstance(result.exception, AssertionError) and "would have run" in str(result.exception), result.output
