from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inocray.results import _layout as rundir
from inocray.results import _rows as store


def row(trial="t1", trait="spanish", rate=0.5, context="neutral"):
    return {
        "sweep_hash": "abc", "setting": "toy", "trial_id": trial, "stage": "trained",
        "prompt_id": "es-always", "prompt_text": "You always speak in Spanish.",
        "prompt_role": "inoculation", "seed": 1, "step": 150, "context": context, "trait": trait,
        "desired": trait == "caps", "rate": rate, "n": 128,
    }


def test_rows_round_trip(tmp_path):
    rows = [row(), row(trait="caps", rate=0.25, context="prompt")]
    store.write_rows(tmp_path, "t1", rows)
    table = store.read_rows(tmp_path)
    assert table.schema == store.SCHEMA
    assert [{k: r[k] for k in rows[0]} for r in table.to_pylist()] == rows


def test_rows_of_a_release_before_grids_read_with_the_grid_columns_defaulted(tmp_path):
    """A run directory written before rows had model, cell and axis columns stays readable."""
    old = pa.schema([f for f in store.SCHEMA if f.name not in store.GRID_COLUMNS])
    (tmp_path / "rows").mkdir()
    pq.write_table(pa.Table.from_pylist([row()], schema=old), tmp_path / "rows" / "t1.parquet")
    store.write_rows(tmp_path, "t2", [row(trial="t2") | {"model": "toy", "cell": "lr=0.1", "train.lr": 0.1}])
    got = {r["trial_id"]: r for r in store.read_rows(tmp_path).to_pylist()}
    assert (got["t1"]["model"], got["t1"]["cell"], got["t1"]["train.lr"]) == ("", "", None)
    assert (got["t2"]["model"], got["t2"]["cell"], got["t2"]["train.lr"]) == ("toy", "lr=0.1", 0.1)


def test_a_row_missing_a_column_is_refused(tmp_path):
    incomplete = row()
    del incomplete["step"]
    with pytest.raises(ValueError, match="step"):
        store.write_rows(tmp_path, "t1", [incomplete])
    assert not (tmp_path / "rows").exists() or not list((tmp_path / "rows").iterdir())


def test_rewrite_replaces_rows_of_a_retried_trial(tmp_path):
    store.write_rows(tmp_path, "t1", [row(rate=0.1)])
    store.write_rows(tmp_path, "t1", [row(rate=0.9)])
    store.write_rows(tmp_path, "t2", [row(trial="t2", rate=0.3)])
    table = store.read_rows(tmp_path)
    assert sorted(zip(table["trial_id"].to_pylist(), table["rate"].to_pylist())) == [("t1", 0.9), ("t2", 0.3)]
    assert not [p for p in (tmp_path / "rows").iterdir() if p.suffix != ".parquet"]  # no temp files left


def test_a_row_of_the_wrong_type_is_refused(tmp_path):
    with pytest.raises(pa.ArrowInvalid, match="Could not convert 'not a number' with type str"):
        store.write_rows(tmp_path, "t1", [{**row(), "rate": "not a number"}])
    assert not store.has_rows(tmp_path, "t1", "abc")
    assert not (tmp_path / "rows").exists() or list((tmp_path / "rows").iterdir()) == []


def test_a_write_that_fails_halfway_leaves_nothing(tmp_path, monkeypatch):
    store.write_rows(tmp_path, "t1", [row(rate=0.1)])

    def half_then_disk_full(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        store.write_rows(tmp_path, "t1", [row(rate=0.9)])
    with pytest.raises(OSError, match="No space left on device"):
        store.write_rows(tmp_path, "t2", [row(trial="t2")])
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "rows").iterdir()] == ["t1.parquet"]  # no temporary file left
    assert store.read_rows(tmp_path)["rate"].to_pylist() == [0.1]  # the old rows, whole


def test_empty_run_reads_as_empty_table(tmp_path):
    assert store.read_rows(tmp_path).num_rows == 0


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_trial_ids_cannot_escape_the_run_dir(tmp_path, bad):
    with pytest.raises(ValueError):
        rundir.rows_path(tmp_path, bad)


def test_file_is_plain_parquet(tmp_path):
    path = store.write_rows(tmp_path, "t1", [row()])
    assert pq.read_table(path).num_rows == 1


def test_a_damaged_rows_file_does_not_count_as_finished(tmp_path):
    path = store.write_rows(tmp_path, "t1", [row()])
    assert store.has_rows(tmp_path, "t1", "abc")
    path.write_bytes(path.read_bytes()[:-20])  # cut off the footer
    assert not store.has_rows(tmp_path, "t1", "abc")
