"""What a run directory trusts: a trial is done only when its rows file is that trial's rows of
this sweep; analyze refuses rows of another sweep; files are flushed to the disk around their
rename; a checkpoint tag that a reader took from `latest` is never deleted under it."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import result_row, tiny_sweep

from inocray.cli import main
from inocray.config import parse_sweep
from inocray.results import _rows as store
from inocray.results import claim, storage
from inocray.run import run_progress
from inocray.training import _checkpoints as checkpoints

SPEC = parse_sweep(tiny_sweep(prompts=["es-always", "es-often"]), source="tiny.yaml", check_model=False)
TRIAL = "es-always-s0"


def row(trial=TRIAL, sweep_hash=SPEC.hash(), trait="spanish"):
    return result_row(sweep_hash=sweep_hash, trial_id=trial, trait=trait)


def empty(run_dir):
    store.write_rows(run_dir, TRIAL, [])


def foreign_schema(run_dir):
    pq.write_table(pa.table({"trial_id": [TRIAL], "score": [1.0]}), run_dir / "rows" / f"{TRIAL}.parquet")


def other_sweep(run_dir):
    store.write_rows(run_dir, TRIAL, [row(sweep_hash="0123456789ab")])


def other_trial(run_dir):  # es-often-s0's rows copied under this trial's name
    store.write_rows(run_dir, TRIAL, [row(trial="es-often-s0")])


@pytest.fixture
def run_dir(tmp_path):
    claim(SPEC, tmp_path / "run")
    (tmp_path / "run" / "rows").mkdir()
    return tmp_path / "run"


@pytest.mark.parametrize("write", [empty, foreign_schema, other_sweep, other_trial])
def test_a_rows_file_that_is_not_the_trials_own_does_not_prove_it_finished(run_dir, write):
    write(run_dir)
    progress = run_progress(run_dir)  # `inocray status`
    assert TRIAL not in progress.done and progress.left[0] == TRIAL
    assert f"trials done: 0 of {len(progress.trials)}" in progress.to_text()
    assert not store.has_rows(run_dir, TRIAL, SPEC.hash())  # the launcher reruns the trial

    store.write_rows(run_dir, TRIAL, [row(), row(trait="caps")])  # the rerun's rows replace it
    assert store.has_rows(run_dir, TRIAL, SPEC.hash())
    assert run_progress(run_dir).done == [TRIAL]


def test_the_no_prompt_controls_file_with_its_ptst_rows_proves_it_finished(run_dir):
    rows = [row(trial="none-s0"), row(trial="ptst-s0")]  # the PTST rows carry a virtual trial id
    store.write_rows(run_dir, "none-s0", rows)
    assert store.has_rows(run_dir, "none-s0", SPEC.hash())


def test_analyze_refuses_a_run_directory_holding_rows_of_another_sweep(run_dir):
    store.write_rows(run_dir, TRIAL, [row(), row(trait="caps")])
    store.write_rows(run_dir, "es-often-s0", [row(trial="es-often-s0", sweep_hash="0123456789ab")])
    result = CliRunner().invoke(main, ["analyze", str(run_dir), "--n-boot", "100"])
    assert result.exit_code == 2, result.output
    assert result.output == (f"error: {run_dir} holds rows of sweep 0123456789ab (trial es-often-s0), not only of "
                             f"its own sweep {SPEC.hash()}; move those rows files out of {run_dir / 'rows'}\n")
    assert not (run_dir / "analysis.csv").exists()
    # status still reads it, and says what is wrong
    text = run_progress(run_dir).to_text()
    assert "rows stored: 2\nrows of another sweep: 1 (not counted;" in text


def test_rows_of_two_sweeps_without_a_sweep_record_are_refused(tmp_path):
    store.write_rows(tmp_path, "a", [row(trial="a")])
    store.write_rows(tmp_path, "b", [row(trial="b", sweep_hash="0123456789ab")])
    with pytest.raises(store.InputError, match="holds rows of sweep"):
        store.read_rows(tmp_path)
    assert store.read_rows(tmp_path, other_sweeps=True).num_rows == 2


def test_a_published_file_and_its_directory_reach_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("rename", str(b))) or real_replace(a, b))
    run = tmp_path / "run"
    claim(SPEC, run)
    record = str(run / "sweep.json")
    fsyncs_of_tmp = [e for e in events[:events.index(("rename", record))] if e[0] == "fsync"]
    assert [p for _, p in fsyncs_of_tmp][-2:][1] == str(run) and ".sweep.json." in fsyncs_of_tmp[-2][1]
    assert events[events.index(("rename", record)) + 1] == ("fsync", str(run))
    events.clear()
    path = store.write_rows(run, TRIAL, [row()])
    assert [kind for kind, _ in events] == ["fsync", "fsync", "rename", "fsync"]
    assert events[1:] == [("fsync", str(run / "rows")), ("rename", str(path)), ("fsync", str(run / "rows"))]
    assert json.loads((run / "sweep.json").read_text())["hash"] == SPEC.hash()


# --- checkpoint tags under two writers ------------------------------------------------------


class FakeEngine:
    """What save_state asks of a DeepSpeed engine: its files under save_dir/tag."""

    def save_checkpoint(self, save_dir, tag, client_state, **kwargs):
        d = Path(save_dir) / tag
        d.mkdir(parents=True, exist_ok=True)
        (d / "model_states.pt").write_text(json.dumps(client_state))


@pytest.fixture
def no_barrier(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "barrier", lambda: None)  # one rank: nothing to wait for


@pytest.mark.usefixtures("no_barrier")
def test_the_tag_a_reader_took_from_latest_survives_the_next_save(tmp_path):
    cp = tmp_path / "checkpoints" / TRIAL
    checkpoints.save_state(FakeEngine(), cp, 25, rank=0)
    reading = checkpoints.latest_tag(cp)  # a resuming rank has read `latest`, and now loads it
    checkpoints.save_state(FakeEngine(), cp, 50, rank=0)
    assert (cp / "state" / reading / "model_states.pt").is_file()
    assert checkpoints.latest_tag(cp) == "step-50"
    checkpoints.save_state(FakeEngine(), cp, 75, rank=0)  # two saves on: the old tag goes
    assert sorted(p.name for p in (cp / "state").iterdir()) == ["latest", "step-50", "step-75"]


@pytest.mark.usefixtures("no_barrier")
def test_a_writer_behind_another_neither_deletes_nor_hides_the_newer_tag(tmp_path):
    cp = tmp_path / "checkpoints" / TRIAL
    checkpoints.save_state(FakeEngine(), cp, 50, rank=0)  # writer A (the group that replaced B)
    checkpoints.save_state(FakeEngine(), cp, 25, rank=0)  # writer B, still running, behind
    assert checkpoints.latest_tag(cp) == "step-50"
    assert (cp / "state" / "step-50" / "model_states.pt").is_file()


def test_a_model_saved_over_another_writers_model_ends_whole(tmp_path, monkeypatch):
    """save_model's rename onto a directory another writer has just put in place (between our
    removal and our rename, ENOTEMPTY on the old code) ends with one whole model there."""
    target = tmp_path / "adapters" / TRIAL

    class Model:
        def save_pretrained(self, where):
            Path(where).mkdir(parents=True, exist_ok=True)
            (Path(where) / "adapter_model.safetensors").write_text("new")

    real_rmtree = checkpoints.shutil.rmtree

    def rmtree_then_other_writer(path, *a, **kw):
        real_rmtree(path, *a, **kw)
        if Path(path) == target:  # the other writer's rename lands right after our removal
            target.mkdir(parents=True)
            (target / "adapter_model.safetensors").write_text("other")

    monkeypatch.setattr(checkpoints.shutil, "rmtree", rmtree_then_other_writer)
    target.mkdir(parents=True)
    (target / "adapter_model.safetensors").write_text("old")
    checkpoints.save_model(Model(), target, zero_stage=2, rank=0, state={"step": 8})
    assert (target / "adapter_model.safetensors").read_text() == "new"
    assert json.loads((target / checkpoints.STATE_FILE).read_text()) == {"step": 8}
    assert [p.name for p in target.parent.iterdir()] == [TRIAL]  # nothing left aside
