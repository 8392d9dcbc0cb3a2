"""Run directories on S3: a real S3 server (moto) started here, reached through the standard
AWS environment variables, as on a cluster."""

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import BUCKET
from conftest import s3_keys as keys

from inocray.training import _checkpoints as checkpoints
from inocray.results import storage
from inocray.results import _rows as store
from inocray.cli import main
from inocray.errors import InputError

TOY = str(Path(__file__).parents[1] / "sweeps" / "toy.yaml")


def row(trial="t1", rate=0.5):
    return {
        "sweep_hash": "abc", "setting": "toy", "trial_id": trial, "stage": "trained",
        "prompt_id": "es-always", "prompt_text": "You always speak in Spanish.", "prompt_role": "inoculation",
        "seed": 1, "step": 10, "context": "neutral", "trait": "spanish", "desired": False, "rate": rate, "n": 8,
    }


@pytest.mark.parametrize("text, expected", [
    ("s3://bkt-1/runs/x", "s3://bkt-1/runs/x"),
    ("s3://bkt-1/runs/x/", "s3://bkt-1/runs/x"),
    ("s3://bkt-1", "s3://bkt-1"),
    ("runs/x", Path("runs/x")),
])
def test_a_run_directory_is_a_path_or_an_s3_uri(text, expected):
    assert storage.location(text) == expected
    assert storage.join(expected, "rows", "a.parquet") == (
        f"{expected}/rows/a.parquet" if isinstance(expected, str) else expected / "rows" / "a.parquet")


@pytest.mark.parametrize("text", ["s3://", "s3:///x", "s3://Bad_Bucket/x", "s3://bkt/a//b", "s3://bkt/../x",
                                  "s3://bkt/x?endpoint_override=h", "s3://key:secret@bkt/x", "s3:/bkt/x",
                                  "gs://bkt/x", "file:///tmp/x"])
def test_a_malformed_uri_is_one_sentence(text):
    with pytest.raises(InputError) as e:
        storage.location(text)
    assert repr(text) in str(e.value) and "\n" not in str(e.value)


def test_rows_round_trip_on_s3(s3):
    assert store.read_rows(s3).num_rows == 0 and not store.has_rows(s3, "t1", "abc")
    path = store.write_rows(s3, "t1", [row(rate=0.1)])
    assert path == f"{s3}/rows/t1.parquet"
    store.write_rows(s3, "t1", [row(rate=0.9)])  # a retried trial replaces its rows
    store.write_rows(s3, "t2", [row(trial="t2", rate=0.3)])
    assert store.has_rows(s3, "t1", "abc") and store.has_rows(s3, "t2", "abc")
    table = store.read_rows(s3)
    assert table.schema == store.SCHEMA
    assert sorted(zip(table["trial_id"].to_pylist(), table["rate"].to_pylist())) == [("t1", 0.9), ("t2", 0.3)]
    assert keys(s3) == ["rows/t1.parquet", "rows/t2.parquet"]  # no temporary objects


def test_a_failed_or_damaged_rows_file_is_not_finished(s3, monkeypatch):
    with pytest.raises(pa.ArrowInvalid, match="Could not convert 'not a number' with type str"):
        store.write_rows(s3, "t1", [{**row(), "rate": "not a number"}])
    assert keys(s3) == []

    def half_then_disk_full(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(pq, "write_table", half_then_disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            store.write_rows(s3, "t1", [row()])
    assert keys(s3) == [] and not list(Path(tempfile.gettempdir()).iterdir())  # nothing uploaded or left
    store.write_rows(s3, "t2", [row(trial="t2")])
    whole = storage.read_bytes(f"{s3}/rows/t2.parquet")
    storage.write_atomically(f"{s3}/rows/t2.parquet", lambda tmp: Path(tmp).write_bytes(whole[:-20]))
    assert not store.has_rows(s3, "t2", "abc")


def test_sweep_record_status_and_logs_on_s3(s3):
    from inocray.run import load_cluster_spec
    from inocray.results import claim

    spec = load_cluster_spec(TOY)
    claim(spec, s3)
    claim(spec, s3)  # the same sweep again: accepted
    assert json.loads(storage.read_bytes(f"{s3}/sweep.json"))["hash"] == spec.hash()
    other = dataclasses.replace(spec, seeds=[99])
    with pytest.raises(InputError, match="holds sweep"):
        claim(other, s3)
    store.write_rows(s3, "es-always-s0", [{**row(trial="es-always-s0"), "sweep_hash": spec.hash()}])
    result = CliRunner().invoke(main, ["status", s3])
    assert result.exit_code == 0, result.output
    assert "trials done: 1 of" in result.output and "base model measured: no" in result.output

    storage.append_text(f"{s3}/logs/t.log", "one\n")
    storage.append_text(f"{s3}/logs/t.log", "two\n")
    assert storage.read_bytes(f"{s3}/logs/t.log") == b"one\ntwo\n"


def test_models_upload_whole_and_engines_get_each_version(s3, tmp_path):
    model = tmp_path / "adapter"
    model.mkdir()
    (model / "adapter_model.safetensors").write_bytes(b"v1")
    (model / checkpoints.STATE_FILE).write_text("{}")
    storage.upload(model, f"{s3}/adapters/t1", last=checkpoints.STATE_FILE)
    assert keys(s3) == ["adapters/t1/adapter_model.safetensors", "adapters/t1/train_state.json"]
    first = storage.local_copy(f"{s3}/adapters/t1")
    assert Path(first, "adapter_model.safetensors").read_bytes() == b"v1"
    assert storage.local_copy(f"{s3}/adapters/t1") == first  # downloaded once

    (model / "adapter_model.safetensors").write_bytes(b"v2, longer")  # a retried trial rewrote it
    storage.upload(model, f"{s3}/adapters/t1", last=checkpoints.STATE_FILE)
    second = storage.local_copy(f"{s3}/adapters/t1")
    assert second != first and Path(second, "adapter_model.safetensors").read_bytes() == b"v2, longer"
    assert storage.local_copy(str(model)) == str(model)  # a local model is used where it is


class FakeEngine:
    """DeepSpeed's checkpoint calls as the storage sees them: every rank writes its own file."""

    def __init__(self, rank):
        self.rank = rank

    def save_checkpoint(self, save_dir, tag, client_state, **kwargs):
        d = Path(save_dir) / tag
        d.mkdir(parents=True, exist_ok=True)
        (d / f"optim_rank{self.rank}.pt").write_text(json.dumps(client_state))
        if self.rank == 0:
            (d / "model_states.pt").write_text("weights")

    def load_checkpoint(self, load_dir, tag, **kwargs):
        d = Path(load_dir) / tag
        assert sorted(p.name for p in d.iterdir()) == ["model_states.pt", "optim_rank0.pt", "optim_rank1.pt"]
        return str(d), json.loads((d / f"optim_rank{self.rank}.pt").read_text())


@pytest.fixture
def one_process_group():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("one_process_group")
def test_training_state_of_every_rank_goes_up_and_comes_back(s3):
    cp = f"{s3}/checkpoints/t1"
    assert checkpoints.latest_tag(cp) is None
    for step in (5, 10, 15):
        for rank in (1, 0):  # rank 0 names the tag last, after every rank's files are up
            checkpoints.save_state(FakeEngine(rank), cp, step, rank)
    assert keys(cp) == ["state/latest", *[f"state/step-{n}/{f}" for n in (10, 15)
                                          for f in ("model_states.pt", "optim_rank0.pt", "optim_rank1.pt")]]
    # the oldest tag is gone; the one `latest` named before (a reader may be loading it) stays
    assert checkpoints.latest_tag(cp) == "step-15"
    assert checkpoints.resume(FakeEngine(1), cp, rank=1) == 15
    checkpoints.discard_state(cp)
    assert keys(cp) == [] and checkpoints.latest_tag(cp) is None


@pytest.mark.slow
@pytest.mark.usefixtures("one_process_group")
def test_deepspeed_resumes_from_state_that_only_s3_holds(s3, monkeypatch):
    """A real DeepSpeed engine saves through S3 and a fresh one, with no local copy left, resumes."""
    import deepspeed
    import torch

    for key in ("LOCAL_RANK", "RANK"):  # what a launcher (here: Ray Train) sets
        monkeypatch.setenv(key, "0")
    monkeypatch.setenv("WORLD_SIZE", "1")

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # as train.py: no JIT build

    def engine():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 4)
        config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2}, "steps_per_print": 1 << 30}
        return deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=0.1),
                                    config=config)[0]

    trained, cp = engine(), f"{s3}/checkpoints/t1"
    for _ in range(3):
        trained.backward(trained(torch.ones(1, 4)).sum())
        trained.step()
    checkpoints.save_state(trained, cp, 3, rank=0)
    assert not list(storage.staging(cp).rglob("*.pt"))  # uploaded, then dropped locally
    fresh = engine()
    assert checkpoints.resume(fresh, cp, rank=0) == 3
    assert torch.equal(fresh.module.weight, trained.module.weight)


def test_a_working_copy_uploads_what_was_written(s3):
    store.write_rows(s3, "t1", [row()])
    with storage.working_copy(s3, fetch=("sweep.json", "rows")) as local:
        assert store.read_rows(local).num_rows == 1
        (local / "analysis.csv").write_text("a,b\n")
    assert keys(s3) == ["analysis.csv", "rows/t1.parquet"]
    assert storage.shown(s3, local / "analysis.csv") == f"{s3}/analysis.csv"
    assert not local.exists()  # the copy is gone; the next one starts afresh


def _cli_fails_cleanly(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("uri", ["s3://Bad_Bucket/run", "s3:/inocray-test/run", "s3://inocray-test/a//b"])
def test_a_malformed_run_dir_uri_is_exit_2_and_writes_nothing(s3_env, uri, tmp_path, monkeypatch):
    for args in (["run", TOY, "--run-dir", uri], ["run", "--resume", uri], ["status", uri],
                 ["analyze", uri], ["report", uri]):
        _cli_fails_cleanly(args, "is not", tmp_path, monkeypatch)
    assert keys(f"s3://{BUCKET}/run") == []


def test_an_unreachable_endpoint_or_missing_bucket_is_exit_2(s3_env, tmp_path, monkeypatch):
    _cli_fails_cleanly(["run", TOY, "--run-dir", "s3://no-such-bucket/run"],
                       "there is no bucket 'no-such-bucket'", tmp_path, monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    _cli_fails_cleanly(["run", TOY, "--run-dir", f"s3://{BUCKET}/run"], "cannot reach",
                       tmp_path, monkeypatch)  # (after the client's retries: about 6 s)


def test_screen_reads_a_run_on_s3_and_names_its_uri(s3, tmp_path, monkeypatch):
    """`screen --from s3://...` reads the run's rows from the bucket (before any model work) and
    its error names the URI, not the local copy it read."""
    store.write_rows(s3, "t1", [row() | {"setting": "sim"}])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Speak Spanish.\n")
    (tmp_path / "cwd").mkdir()
    _cli_fails_cleanly(["screen", TOY, "--prompts", str(prompts), "--from", s3],
                       f"{s3} holds results of setting sim, not of this sweep's setting 'toy'",
                       tmp_path / "cwd", monkeypatch)


@pytest.mark.slow
def test_a_sweep_into_s3_end_to_end_and_its_rerun_skips_every_trial(toy_model, s3, s3_env, tmp_path, request):
    """The real thing at the smallest scale: `inocray run --run-dir s3://...` in its own process
    and Ray (whose workers and engine replica read the AWS variables), then analysis and a rerun."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "ons3", "setting": "toy", "model": str(toy_model), "prompts": ["es-always"], "seeds": [0],
        "train": {"steps": 4, "batch_size": 8, "examples": 32, "checkpoint_every": 2},
        "eval": {"requests": 4, "samples": 1, "max_tokens": 8},
    }))
    cmd = [sys.executable, "-m", "inocray.cli", "run", str(sweep), "--run-dir", s3]
    # This run's own Ray, apart from the suite's; short paths (Ray's and vLLM's socket paths are
    # limited); its staging and downloads in a directory deleted afterwards.
    scratch = tempfile.mkdtemp(prefix="s3run-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    os.mkdir(f"{scratch}/ray")
    env = {**os.environ, **s3_env, "RAY_TMPDIR": f"{scratch}/ray", "TMPDIR": scratch}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 trials, 0 already done" in first.stdout and f"results in {s3}:" in first.stdout

    trials = ("es-always-s0", "none-s0")
    stored = keys(s3)
    assert "sweep.json" in stored and "analysis.csv" in stored and "elicitation-spanish.png" in stored
    assert {f"rows/{t}.parquet" for t in ("base", "data", *trials)} <= set(stored)
    for t in trials:
        assert {f"adapters/{t}/adapter_model.safetensors", f"adapters/{t}/train_state.json",
                f"checkpoints/{t}/step-2/adapter_model.safetensors", f"logs/{t}.log"} <= set(stored)
        assert not [k for k in stored if k.startswith(f"checkpoints/{t}/state/")]  # discarded at the end
        log = storage.read_bytes(f"{s3}/logs/{t}.log").decode()
        assert "start step=0" in log and "evaluated step 2" in log and "evaluated step 4" in log
    assert not (tmp_path / "runs").exists()  # nothing went to a local run directory
    assert any(k.startswith("tune/") for k in stored) and any(k.startswith("train/") for k in stored)  # Ray's

    rows = store.read_rows(s3).to_pylist()
    trained = {(r["trial_id"], r["context"], r["trait"]) for r in rows if r["stage"] == "trained"}
    assert len(trained) == 2 * 2 * 2
    result = CliRunner().invoke(main, ["analyze", s3, "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    assert f"wrote {s3}/analysis.parquet" in result.output and "analysis.parquet" in keys(s3)
    result = CliRunner().invoke(main, ["report", s3, "--n-boot", "100"])
    assert result.exit_code == 0 and result.output == f"{s3}/report.html\n", result.output
    page = storage.read_bytes(f"{s3}/report.html").decode()
    assert f"<code>{s3}</code>" in page and ".copy-" not in page  # not the temporary copy

    import boto3

    def stamps():
        objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=s3.split("/", 3)[3] + "/rows/")
        return {o["Key"]: (o["LastModified"], o["ETag"]) for o in objects["Contents"]}

    before = stamps()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "2 trials, 2 already done" in rerun.stdout
    assert stamps() == before  # no trial ran again, no rows were rewritten
    assert re.search(r"trials finished in \d+ s", rerun.stdout)
