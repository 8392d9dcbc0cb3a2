"""Models named by a Hugging Face Hub id, resolved through huggingface_hub's own code with no
network: a cache laid out as huggingface_hub lays it out (models--ORG--NAME/{blobs, snapshots,
refs}), HF_HUB_OFFLINE, and a local HTTP server standing for the Hub where it must answer."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray import models
from inocray.cli import main
from inocray.config import parse_sweep
from inocray.errors import InputError
from inocray.models import _hub
from inocray.results import claim, pinned_commits, sweep_record

OLD, NEW = "a" * 40, "b" * 40  # two commits of one repository


def put_in_cache(cache: Path, repo: str, source: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """`source`'s files as commit `commit` of Hub repository `repo` in Hub cache `cache`, the way
    huggingface_hub stores a download: content-addressed blobs, a snapshot of links to them, and
    each ref in `refs` naming the commit. Returns the snapshot directory."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


def chat_model(where: Path, template: bool = True) -> Path:
    """A directory standing for a model's files: a config and a tokenizer config, with or
    without a chat template."""
    where.mkdir(parents=True)
    (where / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (where / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"} if template else {}))
    return where


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hub cache as HF_HUB_CACHE, offline; a fresh process's resolutions."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both variables once, at import: set what it read, as a new process would.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(_hub, "_resolved", {})
    return cache


def test_an_id_resolves_to_its_snapshot_in_the_cache(hub, tmp_path):
    snapshot = put_in_cache(hub, "org/chat", chat_model(tmp_path / "m"), OLD, refs=("main", "v1"))
    for model in ("org/chat", "org/chat@v1", f"org/chat@{OLD}"):
        found = models.hub(model)
        assert (found.path, found.commit) == (str(snapshot), OLD), model
        assert models.resolve(model) == str(snapshot)
    assert found.revision == OLD and models.hub("org/chat").revision == "main"


def test_a_local_directory_or_a_preset_is_not_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "chat").mkdir(parents=True)
    assert models.is_hub_id("Qwen/Qwen2.5-7B-Instruct") and models.is_hub_id("Qwen/Qwen2.5-7B-Instruct@main")
    assert not models.is_hub_id("org/chat")  # a directory here wins, as in transformers
    assert not any(models.is_hub_id(m) for m in ("toy", "./org/x", "/abs/x", "a/b/c", "org/x@"))


def test_a_sweep_with_an_id_validates_and_names_it_in_its_hash(hub, tmp_path):
    put_in_cache(hub, "org/chat", chat_model(tmp_path / "m"), OLD)
    spec = parse_sweep(tiny_sweep(model="org/chat", eval={"judge_model": "org/chat"}))
    assert spec.model == "org/chat"  # the id, not the cache path, is what the sweep (and its hash) holds


@pytest.mark.parametrize("model, where, says", [
    ("org/absent", "model", "field 'model' names Hub id org/absent: the Hub cannot be reached (no network, or "
                            "HF_HUB_OFFLINE=1) and the Hub cache"),
    ("org/chat@v9", "model", "holds no snapshot of v9"),
    ("org/base", "model", "has no chat template"),
    ("org/absent", "eval.judge_model", "field 'eval.judge_model' names Hub id org/absent: the Hub cannot be reached"),
])
def test_an_id_that_cannot_be_used_is_one_sentence_and_nothing_written(hub, tmp_path, model, where, says):
    put_in_cache(hub, "org/chat", chat_model(tmp_path / "m"), OLD)
    put_in_cache(hub, "org/base", chat_model(tmp_path / "b", template=False), OLD)
    doc = tiny_sweep(model=model) if where == "model" else tiny_sweep(eval={"judge_model": model})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and says in result.output, result.output
    assert not (tmp_path / "run").exists()


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The Hub's answer for a repository: gated, or absent (its X-Error-Code header)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        code = "GatedRepo" if "/gated/" in self.path else "RepoNotFound"
        self.send_response(401 if code == "RepoNotFound" else 403)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"error": "no"}).encode())

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("repo, says", [
    ("org/gated", "the Hub repository org/gated is gated; accept its terms on huggingface.co and set HF_TOKEN"),
    ("org/absent", "there is no Hub repository org/absent (or it is private and HF_TOKEN does not reach it)"),
])
def test_a_gated_or_missing_repository_is_one_sentence(hub, monkeypatch, repo, says):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(InputError) as e:
            models.hub(repo)
        assert str(e.value) == f"model {repo}: {says}" or says in str(e.value), str(e.value)
        assert "\n" not in str(e.value)
    finally:
        server.shutdown()


def test_a_rerun_keeps_the_recorded_commit_and_says_the_branch_moved(hub, tmp_path):
    put_in_cache(hub, "org/chat", chat_model(tmp_path / "old"), OLD)
    spec = parse_sweep(tiny_sweep(model="org/chat"))
    lines = []
    paths, commits = models.resolve_all([spec.model], {}, lines.append)
    assert commits == {"org/chat": OLD} and lines == [f"model org/chat: Hub commit {OLD}"]
    claim(spec, tmp_path / "run", hub=commits)
    assert sweep_record(tmp_path / "run")["hub"] == {"org/chat": OLD}

    # main moves on; a new process resolving the rerun keeps the commit the run began with.
    new = put_in_cache(hub, "org/chat", chat_model(tmp_path / "new"), NEW)
    _hub._resolved.clear()
    assert models.resolve("org/chat") == str(new)
    _hub._resolved.clear()
    lines.clear()
    paths, commits = models.resolve_all([spec.model], pinned_commits(tmp_path / "run"), lines.append)
    assert commits == {"org/chat": OLD} and paths["org/chat"].endswith(OLD)
    assert lines == [f"model org/chat: this run directory was begun at Hub commit {OLD[:12]} and keeps it, "
                     f"though main is now {NEW[:12]} (a new run directory takes the new commit)"]
    assert models.resolve("org/chat") == paths["org/chat"]  # the engines and the judge get the same


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_sweep_on_a_hub_id_trains_and_evaluates_the_cached_snapshot(hub, toy_model, tmp_path):
    """The toy model put into the Hub cache: the id resolves through huggingface_hub, offline,
    and the engine and the workers (which see neither the cache variables nor the network) get
    the snapshot's directory; the run directory records the commit."""
    from inocray.results import read_rows
    from inocray.run import run_sweep

    put_in_cache(hub, "org/toy-chat", toy_model, OLD)
    spec = parse_sweep(tiny_sweep(model="org/toy-chat", train={"steps": 4}, eval={"requests": 4}))
    lines = []
    run_dir = run_sweep(spec, tmp_path / "run", echo=lines.append)
    assert f"model org/toy-chat: Hub commit {OLD}" in lines
    assert sweep_record(run_dir)["hub"] == {"org/toy-chat": OLD}
    rows = read_rows(run_dir).to_pylist()
    trained = {(r["trial_id"], r["context"], r["trait"]) for r in rows if r["stage"] == "trained"}
    assert trained == {(t, c, s) for t in ("es-always-s0", "none-s0") for c in ("prompt", "neutral")
                       for s in ("spanish", "caps")}, trained
    assert any(r["stage"] == "base" for r in rows)
