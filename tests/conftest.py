"""Shared fixtures and helpers; test files import helpers from here, never from each other.

Fixtures: one Ray session and one tiny toy base model for the whole test run, a hand-set
tiny judge model whose answer is known, and `tiny_sweep(**overrides)`, the sweep document a
test starts from. Tests that start Ray, Serve, vLLM or DeepSpeed are
marked `slow` (docs/CONTRIBUTING.md); a test that uses `ray_session` without the mark is an
error at collection.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items if "ray_session" in item.fixturenames and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"these tests start Ray but are not marked slow: {', '.join(unmarked)}")


# vLLM's prompt logprobs and the transformers backend's forward pass differ in their CPU kernels'
# summation order: per-token log-probabilities agree to this many nats, averaged over a response.
LOGPROB_BACKENDS_AGREE = 2e-3

TINY_SWEEP = {
    "name": "tiny",
    "setting": "toy",
    "prompts": ["es-always"],
    "seeds": [0],
    "train": {"steps": 8, "batch_size": 8, "examples": 64},
    "eval": {"requests": 8, "samples": 2, "max_tokens": 8},
}


def tiny_sweep(**overrides) -> dict:
    """A sweep document on the toy world, small enough to run in seconds: TINY_SWEEP with
    `overrides`. A dict given for a section (train, eval, engine, ...) is merged into that
    section, so `tiny_sweep(train={"steps": 4})` keeps the other training fields; None removes
    a key (`tiny_sweep(train=None)` leaves training at the sweep file's defaults)."""
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_SWEEP.items()}
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = doc[key] | value
        else:
            doc[key] = value
    return doc


def result_row(**fields) -> dict:
    """One row of results.SCHEMA (a trained trial's, trait spanish) with `fields` changed: what a
    test writes where a trial's rows must prove it finished (sweep_hash and trial_id matter)."""
    return {"sweep_hash": "abc", "setting": "toy", "trial_id": "t1", "stage": "trained", "prompt_id": "none",
            "prompt_text": "", "prompt_role": "none", "seed": 0, "step": 8, "context": "neutral",
            "trait": "spanish", "desired": False, "rate": 0.5, "n": 8} | fields


@pytest.fixture(name="tiny_sweep")
def tiny_sweep_fixture():
    """`tiny_sweep` as a fixture, for tests that take it as an argument."""
    return tiny_sweep


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory):
    """A tiny toy-world model built from scratch (about half a minute), shared by all tests."""
    from inocray.models.toy import ToyConfig, build_base_model

    return build_base_model(ToyConfig.tiny(), cache_root=tmp_path_factory.mktemp("cache"), log=lambda *a: None)


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """Ray for the whole run; its workers reach the suite's S3 server as the tests do."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": s3_server})
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


# --- S3: a real server (moto) in this process, reached through the standard AWS variables ----

BUCKET = "inocray-test"


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server with one bucket, for the whole run; yields the AWS environment that
    points at it (given to Ray's workers by `ray_session`, and to a test by `s3_env`)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process's environment pointed at the S3 server for one test."""
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return s3_server


@pytest.fixture
def s3(s3_env, request, tmp_path, monkeypatch):
    """An empty prefix of its own for each test, as an s3:// location; the local staging
    directories (under the temporary directory) go into the test's own tmp_path."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return f"s3://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}"


def s3_keys(prefix: str) -> list[str]:
    """Every object under an s3:// prefix, relative to it."""
    import boto3

    start = prefix.removeprefix(f"s3://{BUCKET}/") + "/"
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=start)
    return sorted(o["Key"][len(start):] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


# --- a judge whose answer is known ------------------------------------------------------------

# The judge's first-token distribution, whatever it is asked: "90" 1/2, "30" 1/4, "ok" 1/4.
# Its score (scorers.weighted_score, over the number tokens) is (90/2 + 30/4) / (3/4) = 70.
JUDGE_ANSWER = {"90": 0.5, "30": 0.25, "ok": 0.25}
JUDGE_SCORE = 70.0


@pytest.fixture(scope="session")
def judge_model(tmp_path_factory) -> Path:
    return build_judge(tmp_path_factory.mktemp("judge"))


def build_judge(out: Path) -> Path:
    """Save a one-layer Llama whose next-token distribution is JUDGE_ANSWER after any prompt.

    Its tokenizer makes each chat turn's whole text one token (<unk> unless it is a number
    0-100 or "ok"), so any judge prompt fits. Every token embeds to the same all-ones vector and
    the layer adds nothing (o_proj and down_proj are zero), so the last hidden state is
    RMSNorm(ones) * w = w for every prompt; with w = e0 the logits are column 0 of the head,
    set to the log-probabilities of JUDGE_ANSWER (-40 elsewhere: e^-40 of the mass).
    """
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from inocray.models.toy.tokenizer import BOS, CHAT_TEMPLATE, EOS, PAD, SPECIAL, UNK

    vocab = {tok: i for i, tok in enumerate(SPECIAL + [str(n) for n in range(101)] + ["ok"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))  # no pre-tokenizer: a turn is one word
    tok.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                        unk_token=UNK, chat_template=CHAT_TEMPLATE, model_max_length=128)
    tokenizer.save_pretrained(out)
    special = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[PAD])
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=128,
                         rms_norm_eps=1e-12, tie_word_embeddings=False, **special)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = -40.0
        for text, p in JUDGE_ANSWER.items():
            model.lm_head.weight[vocab[text], 0] = math.log(p)
    model.save_pretrained(out)
    return out


# --- reading the HTML report ----------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The images (src, alt) and the number of tables of an HTML page."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.alts: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        self.images += [v for k, v in attrs if tag == "img" and k == "src"]
        self.alts += [v for k, v in attrs if tag == "img" and k == "alt"]
        self.tables += tag == "table"


def decoded(src: str) -> bytes:
    """The bytes of a base64 PNG data URI."""
    head, data = src.split(",", 1)
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


def assert_png(data: bytes) -> None:
    """`data` is a PNG that decodes to an image larger than 100 x 100 pixels."""
    from matplotlib import image

    assert data.startswith(PNG_MAGIC)
    pixels = image.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100


# --- reading Ray's metrics back as Prometheus (and the dashboard's Prometheus) would ---------


def scrape() -> dict[tuple[str, frozenset], float]:
    """Every sample of this node's metrics export: (name, labels) -> value."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Scraper(threading.Thread):
    """Scrapes every second, as Prometheus would, and keeps the last value of every series seen.

    Processes export every 10 s and a gauge leaves the export about 20 s after its process ends
    (two export intervals), so a test runs a Scraper through the work whose metrics it checks.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[str, frozenset], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.seen |= scrape()
            except OSError:  # the agent restarting or busy: the next scrape tries again
                continue

    def values(self, name: str, **labels: str) -> dict[frozenset, float]:
        """The series of `name` (Prometheus spelling) whose labels include `labels`."""
        return {tags: v for (n, tags), v in self.seen.items() if n == name and frozenset(labels.items()) <= tags}

    def total(self, name: str, **labels: str) -> float:
        """A counter's count over every process that reported it."""
        return sum(self.values(name, **labels).values())


# --- sweep files: one that loads, and bad ones with the words of their error -----------------

GOOD_SWEEP = """\
name: t
setting: toy
prompts: [es-always]
irrelevant: [irr-helpful]
seeds: [0, 1]
train: {lr: 1e-3, steps: 10}
"""

BAD_SWEEPS = {
    "malformed yaml": ("name: t\nprompts: [es-always\n", "not valid YAML"),
    "unknown key": (GOOD_SWEEP + "learning_rate: 0.1\n", "unknown field 'learning_rate'"),
    "unknown nested key": (GOOD_SWEEP.replace("steps: 10", "stepz: 10"), "unknown field 'train.stepz'"),
    "unknown setting": (GOOD_SWEEP.replace("setting: toy", "setting: nope"), "field 'setting'"),
    "empty prompt list": (GOOD_SWEEP.replace("[es-always]", "[]"), "field 'prompts'"),
    "unknown prompt": (GOOD_SWEEP.replace("[es-always]", "[es-nope]"), "field 'prompts[0]'"),
    "seed not an integer": (GOOD_SWEEP.replace("[0, 1]", "[0, one]"), "field 'seeds[1]' must be an integer"),
    "float seed": (GOOD_SWEEP.replace("[0, 1]", "[0, 1.5]"), "field 'seeds[1]' must be an integer"),
    "negative lr": (GOOD_SWEEP.replace("lr: 1e-3", "lr: -1"), "field 'train.lr' must be positive"),
    "placement typo": (GOOD_SWEEP + "placement: sytem\n", "field 'placement'"),
    "zero stage 4": (GOOD_SWEEP.replace("steps: 10", "steps: 10, zero_stage: 4"), "field 'train.zero_stage'"),
    "missing model path": (GOOD_SWEEP + "model: /no/such/model\n", "field 'model'"),
    "python tag": (GOOD_SWEEP + "x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "unknown method": (GOOD_SWEEP.replace("steps: 10", "steps: 10, method: qlora"), "field 'train.method'"),
    "bad dtype": (GOOD_SWEEP + "engine: {dtype: float8}\n", "field 'engine.dtype'"),
    "not a mapping": ("- a\n- b\n", "must be a mapping"),
    "missing name": (GOOD_SWEEP.replace("name: t\n", ""), "missing required field 'name'"),
}


# --- a kill at a known point ----------------------------------------------------------------


class Payload:
    """What a tampered checkpoint holds: unpickling it runs a shell command that writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tamper(state_file: Path, marker: Path) -> None:
    """Put a Payload into a saved DeepSpeed state file, as someone with write access to the run
    directory could: the file still holds all it held, and loading it with pickle writes `marker`."""
    import torch

    torch.save(torch.load(state_file, weights_only=False) | {"note": Payload(marker)}, state_file)


class HeldLog(threading.Thread):
    """A trial's log as a named pipe that this thread reads, and can stop reading for a while.

    The training loop's rank 0 opens the log for each line it writes (inocray.results.storage.append_text),
    and opening a pipe waits for its reader. So once `hold_after(line)` is true of a line read,
    the writer's next line waits until `release()`: the run stops at a known point of the loop,
    however busy the machine, and a kill there is not a race.
    """

    def __init__(self, path: Path, hold_after) -> None:
        super().__init__(daemon=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self.path, self.hold_after = path, hold_after
        self.lines: list[str] = []
        self.held = threading.Event()
        self._released = threading.Event()
        self._closed = False

    def run(self) -> None:
        while not self._closed:
            with open(self.path) as pipe:  # waits for a writer; reads until it closes
                self.lines += pipe.readlines()
            if self.hold_after is not None and any(self.hold_after(line) for line in self.lines):
                self.hold_after = None  # hold once
                self.held.set()
                self._released.wait()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        """Stop reading (a reader waiting for a writer is let go) and remove the pipe."""
        self._closed = True
        self._released.set()
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO: no reader waits
        except OSError:
            pass
        self.join(timeout=10)
        self.path.unlink()


def processes_with(marker: str) -> list[int]:
    """The processes whose environment holds `marker` (a test's own Ray, by its RAY_TMPDIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def free_ports(n: int) -> list[int]:
    """`n` TCP ports on 127.0.0.1 that nothing listens on now."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(condition, interval: float = 0.2) -> None:
    """Wait until `condition()` holds; the suite's timeout bounds the wait, not a deadline here."""

    while not condition():
        time.sleep(interval)


def fine_tune(job, storage_dir: str, on_report=None):
    """Train one trial on a worker group of its own (a pool of one slot): how the tests of
    training train, through the same Pool a sweep uses."""
    from inocray.config import training_worker
    from inocray.training import Pool

    with Pool(job.train, training_worker(job.train), slots=1, storage_dir=storage_dir, name=job.trial_id) as pool:
        return pool.train(job, on_report)


@contextlib.contextmanager
def vllm_server(model: str, log: Path, name: str, max_model_len: int = 512):
    """vLLM's own OpenAI-compatible server on 127.0.0.1, serving `model` as `name`, in float32 and
    without LoRA; yields its base URL (".../v1") once it answers, and stops it on exit. Its output
    goes to `log`, shown when it dies or does not come up in 400 s. (`python -m` because the
    `vllm` command of vllm-cpu fails to start: ../shared/FIELD-NOTES.md.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port", str(port),
         "--host", "127.0.0.1", "--max-model-len", str(max_model_len), "--served-model-name", name,
         "--dtype", "float32"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"})
    try:
        deadline = time.monotonic() + 400
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "vLLM's server did not come up in 400 s"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(60)

# --- an API judge: an OpenAI-compatible server, scripted -------------------------------------


class Scripted(ThreadingHTTPServer):
    """An OpenAI-compatible chat-completions server on 127.0.0.1. A prompt "... score N" is
    answered N; in `whole` mode "N" is one token with 0.75 of the mass and N+10 has the rest
    (score 0.75 N + 0.25 (N+10) = N + 2.5), otherwise the number is written digit by digit.
    With `answer` ({token: probability}, whole mode), every prompt but the probe gets that
    first-token distribution. `faults[prompt]`: what the next requests for that prompt get
    first ("429", "500", "slow", "malformed", "nojson", "401")."""

    daemon_threads = True

    def __init__(self, whole: bool = True, delay: float = 0.0, answer: dict[str, float] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.whole, self.delay, self.answer = whole, delay, answer
        self.faults: dict[str, list[str]] = {}
        self.answered: Counter = Counter()  # prompt -> 200 replies
        self.requests: Counter = Counter()  # prompt -> requests
        self.authorization: set[str] = set()
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def reply(self, prompt: str) -> dict:
        probe = prompt.startswith("Write the number 100")
        if self.answer and not probe:
            tops = [{"token": t, "logprob": math.log(p)} for t, p in self.answer.items()]
            tokens = [tops[0] | {"top_logprobs": tops}]
            return {"choices": [{"message": {"role": "assistant", "content": tops[0]["token"]},
                                 "logprobs": {"content": tokens}}], "usage": {"prompt_tokens": 10, "completion_tokens": 1}}
        n = 100 if probe else int(prompt.rsplit(" ", 1)[1])
        if self.whole:
            tops = [{"token": str(n), "logprob": math.log(0.75)}, {"token": str(n + 10), "logprob": math.log(0.25)}]
            tokens = [{"token": str(n), "logprob": math.log(0.75), "top_logprobs": tops}]
        else:
            tokens = [{"token": d, "logprob": -0.1, "top_logprobs": [{"token": d, "logprob": -0.1}]} for d in str(n)]
        return {"choices": [{"message": {"role": "assistant", "content": str(n)}, "logprobs": {"content": tokens}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(tokens)}}


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        s = self.server
        with s.lock:
            s.requests[prompt] += 1
            s.authorization.add(self.headers.get("Authorization", ""))
            fault = s.faults[prompt].pop(0) if s.faults.get(prompt) else ""
            s.in_flight += 1
            s.most_in_flight = max(s.most_in_flight, s.in_flight)
        try:
            time.sleep(s.delay + (1.0 if fault == "slow" else 0.0))
            with s.lock:  # before the reply leaves: a client that has it never sees this request in flight
                s.in_flight -= 1
            if fault in ("429", "500", "401"):
                self.send_response(int(fault))
                if fault == "429":
                    self.send_header("Retry-After", "0.3")
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "scripted"}}')
                return
            payload = {"choices": []} if fault == "malformed" else s.reply(prompt)
            data = b"<html>bad gateway" if fault == "nojson" else json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if not fault:
                with s.lock:
                    s.answered[prompt] += 1
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a slow reply

    def log_message(self, *args):
        pass
