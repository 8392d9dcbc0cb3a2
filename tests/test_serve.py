"""The Serve apps: one engine answers for the base model and each adapter by name, on either backend;
many callers at once, on one replica or several."""

import itertools
import math
import os
import queue
import shutil
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import JUDGE_SCORE, LOGPROB_BACKENDS_AGREE, tiny_sweep
from ray import serve as ray_serve

from inocray import chat
from inocray.evaluation import serve
from inocray.evaluation.backends import most_likely
from inocray.evaluation.serve import GenerateRequest
from inocray.config import EngineSpec, engine_replica, parse_sweep

BACKENDS = ("vllm", "transformers")
# Chats of different lengths (transformers pads them on the left); one has a system prompt.
CHATS = [
    [{"role": "user", "content": "tell me about the red house"}],
    [{"role": "user", "content": "what is the cat"}],
    [{"role": "system", "content": "You always speak in Spanish."}, {"role": "user", "content": "tell me about the dog"}],
]


def make_adapter(model_dir, path, seed, std=0.5):
    """A LoRA adapter with random (not zero) B, so that it visibly changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=std)
    model.save_pretrained(path)
    return str(path)


def greedy(handle, adapter=None, path=None, max_tokens=8):
    request = GenerateRequest(CHATS, 1, max_tokens, temperature=0.0, adapter=adapter, adapter_path=path)
    return handle.generate.remote(request).result()


@pytest.fixture(scope="module")
def engines(toy_model, ray_session):
    """One app per backend on the toy model, for the whole module."""
    handles = {name: serve.start(f"test-{name}", str(toy_model), EngineSpec(name=name), engine_replica(EngineSpec()))
               for name in BACKENDS}
    yield handles
    for name in handles:
        serve.stop(f"test-{name}")


@pytest.fixture(scope="module")
def mild_adapter(toy_model, tmp_path_factory):
    """An adapter that changes the completions without drowning the model (std 0.1)."""
    return make_adapter(toy_model, tmp_path_factory.mktemp("mild") / "adapter", 3, std=0.1)


@pytest.mark.slow
def test_adapters_and_base_give_different_completions(engines, toy_model, tmp_path):
    a = make_adapter(toy_model, tmp_path / "a", 1)
    b = make_adapter(toy_model, tmp_path / "b", 2)
    handle = engines["vllm"]
    base, out_a, out_b = greedy(handle), greedy(handle, "a", a), greedy(handle, "b", b)
    assert len(base) == 3 and all(len(samples) == 1 for samples in base)
    assert base != out_a and base != out_b and out_a != out_b
    assert greedy(handle, "a", a) == out_a  # greedy: the same adapter answers the same


@pytest.mark.slow
def test_both_backends_give_the_same_greedy_completions(engines, mild_adapter):
    vllm, hf = engines["vllm"], engines["transformers"]
    base = greedy(vllm, max_tokens=12)
    tuned = greedy(vllm, "mild", mild_adapter, max_tokens=12)
    assert tuned != base
    assert greedy(hf, max_tokens=12) == base
    assert greedy(hf, "mild", mild_adapter, max_tokens=12) == tuned
    assert greedy(hf, max_tokens=12) == base  # the adapter is off again for the base model


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_sampling_is_seeded_per_chat(engines, backend):
    same = [[{"role": "user", "content": "what is the cat"}]] * 2
    sample = lambda seed: engines[backend].generate.remote(GenerateRequest(same, 3, 12, 1.0, seed=seed)).result()
    first = sample(7)
    assert sample(7) == first  # the same seed draws the same completions
    assert first[0] != first[1]  # two copies of one chat draw from different streams
    assert len(set(first[0])) > 1  # and a chat's samples differ from each other


class FakeDeploymentHandle:
    """Serve's handle as EngineHandle sees it: `options(multiplexed_model_id=...)`, then
    `METHOD.remote(...)` whose `.result()` raises what the replica's fate says."""

    def __init__(self, fates):
        self.fates, self.sent, self.routed_as = fates, [], ""

    def options(self, multiplexed_model_id):
        routed = FakeDeploymentHandle(self.fates)
        routed.sent, routed.routed_as = self.sent, multiplexed_model_id
        return routed

    def __getattr__(self, method):
        handle = self

        class Method:
            def remote(self, *args, **kwargs):
                handle.sent.append((method, handle.routed_as))
                fate = handle.fates.pop(0)

                class Response:
                    def result(self):
                        if isinstance(fate, Exception):
                            raise fate
                        return fate

                return Response()

        return Method()


def test_engine_handle_routes_by_adapter_and_resends_a_call_whose_replica_died():
    from ray.exceptions import ActorDiedError

    fake = FakeDeploymentHandle([ActorDiedError(), ActorDiedError(), [["hola"]], {}, True])
    engine = serve.EngineHandle(fake)
    assert engine.generate.remote(GenerateRequest(CHATS, 1, 4, 0.0, adapter="t-s0")).result() == [["hola"]]
    assert fake.sent == [("generate", "t-s0")] * 3  # sent again twice, to the replica holding t-s0
    engine.top_logprobs.remote(CHATS, 5, adapter="t-s2").result()
    engine.numbers_are_single_tokens.remote().result()
    assert fake.sent[3:] == [("top_logprobs", "t-s2"), ("numbers_are_single_tokens", "")]

    fake = FakeDeploymentHandle([ActorDiedError()] * (serve.RETRIES + 1))
    with pytest.raises(ActorDiedError):  # a replica that keeps dying is not asked forever
        serve.EngineHandle(fake).generate.remote(GenerateRequest(CHATS, 1, 4, 0.0)).result()
    assert len(fake.sent) == serve.RETRIES + 1
    fake = FakeDeploymentHandle([ValueError("bad request")])
    with pytest.raises(ValueError):  # any other error is the caller's, at once
        serve.EngineHandle(fake).generate.remote(GenerateRequest(CHATS, 1, 4, 0.0)).result()
    assert len(fake.sent) == 1


class FakeVllmEngine:
    """vLLM's engine as the batching loop uses it: a request finishes in the step after it is
    added; a step loads the adapters its requests name (one at path "corrupt" fails to load) and
    fails outright while a prompt "boom" is in the batch. The loop goes round once per
    `next_round()`, so that jobs queued before it share a batch."""

    def __init__(self):
        self.requests, self.loras, self.rounds = {}, set(), threading.Semaphore(0)

    def next_round(self):
        self.rounds.release()

    def has_unfinished_requests(self):  # the loop's first call in each round
        self.rounds.acquire()
        return bool(self.requests)

    def add_request(self, rid, prompt, params, lora_request=None):
        self.requests[rid] = (prompt, lora_request)

    def abort_request(self, rids):
        for rid in rids:
            self.requests.pop(rid, None)

    def list_loras(self):
        return set(self.loras)

    def add_lora(self, lora):
        if lora.path == "corrupt":
            raise ValueError("Error while deserializing header")
        self.loras.add(lora.lora_int_id)

    def step(self):
        for _, lora in self.requests.values():
            if lora is not None and lora.lora_int_id not in self.loras:
                self.add_lora(lora)
        if any(prompt == "boom" for prompt, _ in self.requests.values()):
            raise RuntimeError("the step failed")
        finished = [SimpleNamespace(request_id=rid, finished=True, outputs=[]) for rid in self.requests]
        self.requests.clear()
        return finished


def test_a_failure_in_the_engine_fails_only_the_callers_it_concerns_and_the_engine_goes_on(monkeypatch):
    """The vLLM backend's engine thread, on a fake engine: an adapter that cannot load fails its own
    call only; a failed step fails every call in its batch; either way later calls are answered."""
    from inocray.evaluation.backends import vllm as backend

    fake = FakeVllmEngine()
    monkeypatch.setattr(backend, "_new_engine", lambda *_: SimpleNamespace(llm_engine=fake))
    engine = backend.VllmBackend.__new__(backend.VllmBackend)  # its loop, without tokenizer or vLLM
    engine._queue, engine._request_ids, engine.generated_tokens = queue.Queue(), itertools.count(), 0
    started = Future()
    threading.Thread(target=engine._loop, args=(None, None, started), daemon=True).start()
    started.result(timeout=10)

    def batch(*prompts_and_adapters):
        """What each job of one batch raised (None: answered)."""
        jobs = [backend._Job([prompt], [None], lora) for prompt, lora in prompts_and_adapters]
        for job in jobs:
            engine._queue.put(job)
        fake.next_round()
        return [job.future.exception(timeout=10) for job in jobs]

    good, corrupt = SimpleNamespace(lora_int_id=1, path="good"), SimpleNamespace(lora_int_id=2, path="corrupt")
    failures = batch(("a", good), ("b", corrupt), ("c", None))
    assert failures[0] is None and isinstance(failures[1], ValueError) and failures[2] is None
    assert [type(f) for f in batch(("d", None), ("boom", good))] == [RuntimeError, RuntimeError]
    assert batch(("e", good), ("f", None)) == [None, None]


def test_tokens_with_the_same_text_add_up_before_the_top_k_is_taken():
    pairs = [("7", math.log(0.2)), (" the", math.log(0.3)), ("7", math.log(0.15)), ("<|end|>", -math.inf)]
    assert most_likely(pairs, 1) == pytest.approx({"7": math.log(0.35)})
    assert list(most_likely(pairs, 5)) == ["7", " the", "<|end|>"]


@pytest.mark.slow
def test_top_logprobs_are_the_k_most_likely_first_tokens(engines, mild_adapter):
    k = 5
    got = {}
    for name, handle in engines.items():
        for adapter, path in ((None, None), ("mild", mild_adapter)):
            tops = handle.top_logprobs.remote(CHATS, k, adapter, path).result()
            assert len(tops) == len(CHATS)
            for top in tops:
                values = list(top.values())
                assert len(top) == k and values == sorted(values, reverse=True)
                assert sum(math.exp(v) for v in values) <= 1 + 1e-6
            got[name, adapter] = tops
    for adapter in (None, "mild"):  # the backends agree on texts and values
        for v, h in zip(got["vllm", adapter], got["transformers", adapter]):
            assert v.keys() == h.keys()
            assert list(h.values()) == pytest.approx(list(v.values()), abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_requests_for_a_new_adapter_agree(engines, toy_model, tmp_path, backend):
    """Threads ask for an adapter the engine has never seen, all at once: every answer is the one
    the same weights give under another name."""
    handle = engines[backend]
    fresh = make_adapter(toy_model, tmp_path / "fresh", 4, std=0.1)
    twin = str(shutil.copytree(fresh, tmp_path / "twin"))  # the same weights under another name
    expected = greedy(handle, "twin", twin)
    start, results, errors = threading.Barrier(6), [None] * 6, []

    def ask(i):
        try:
            start.wait()
            results[i] = greedy(handle, "fresh", fresh)
        except Exception as e:  # noqa: BLE001  (collected and shown below)
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(r == expected for r in results)
    assert expected != greedy(handle)  # the adapter was applied
    assert greedy(handle, "twin", twin) == expected  # loading another adapter left this one as it was


def sample(handle, adapter=None, path=None, seed=0, chats=CHATS, samples=3, max_tokens=12):
    request = GenerateRequest(chats, samples, max_tokens, 1.0, seed=seed, adapter=adapter, adapter_path=path)
    return handle.generate.remote(request).result()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_many_adapters_at_once_answer_as_each_alone(engines, toy_model, tmp_path, backend):
    """Six trials' requests arrive together, for more adapters than the engine holds (max_loras 4):
    all are answered (the rest wait their turn), each as it was answered alone, seeds kept."""
    handle = engines[backend]
    paths = [make_adapter(toy_model, tmp_path / f"a{i}", 10 + i, std=0.1) for i in range(6)]
    alone = [sample(handle, f"many{i}", path, seed=i) for i, path in enumerate(paths)]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda i: sample(handle, f"many{i}", paths[i], seed=i), range(6)))
    assert together == alone
    assert len({str(a) for a in alone}) == 6  # six adapters, six different answers


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_adapter_the_engine_cannot_load_fails_its_own_call_only(engines, toy_model, tmp_path, backend):
    """A corrupt adapter arrives while another trial's long request is being answered: its call
    fails, and the other is answered as it was alone (vLLM: in the batch the bad one would join)."""
    handle = engines[backend]
    good = make_adapter(toy_model, tmp_path / "good", 40, std=0.1)
    bad = shutil.copytree(good, tmp_path / "bad")
    (bad / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    chats = CHATS * 300  # a request that takes seconds
    alone = sample(handle, "good", good, chats=chats, max_tokens=24)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(sample, handle, "good", good, chats=chats, max_tokens=24)
        time.sleep(1.0)
        with pytest.raises(Exception, match="safetensors|header|deserializ"):
            sample(handle, "bad", str(bad))
        if backend == "vllm":  # it answers callers together; transformers answers them in turn
            assert not running.done()
        assert running.result() == alone
    assert sample(handle, "bad-then-good", good) == sample(handle, "good", good)  # the engine goes on


def rewrite_adapter(toy_model, path, seed):
    """A retried trial writing its adapter again, with other weights, at the same path."""
    before = os.stat(path / "adapter_model.safetensors").st_mtime_ns
    make_adapter(toy_model, path, seed)
    os.utime(path / "adapter_model.safetensors", ns=(before + 10**9, before + 10**9))  # a coarse clock still ticks


@pytest.fixture(scope="module")
def two_replicas(toy_model, ray_session):
    """The vLLM engine app with two replicas (each 0.25 CPU: the suite's Ray has 2)."""
    spec = EngineSpec(replicas=2, max_loras=2, num_cpus=0.25)
    handle = serve.start("test-replicas", str(toy_model), spec, engine_replica(spec))
    yield handle
    serve.stop("test-replicas")


@pytest.mark.slow
def test_a_rewritten_adapter_is_never_served_stale_by_any_replica(two_replicas, toy_model, tmp_path):
    path = tmp_path / "trial"
    make_adapter(toy_model, path, 21)
    first = greedy(two_replicas, "trial", str(path))
    raw = ray_serve.get_app_handle("test-replicas")  # no routing: Serve spreads these over both replicas
    request = GenerateRequest(CHATS, 1, 8, temperature=0.0, adapter="trial", adapter_path=str(path))
    assert all(raw.generate.remote(request).result() == first for _ in range(6))  # both now hold it
    rewrite_adapter(toy_model, path, 22)
    second = greedy(two_replicas, "twin", str(shutil.copytree(path, tmp_path / "twin")))
    assert second != first
    assert greedy(two_replicas, "trial", str(path)) == second
    assert all(raw.generate.remote(request).result() == second for _ in range(6))


@pytest.mark.slow
def test_requests_for_one_adapter_go_to_the_replica_that_holds_it(two_replicas, toy_model, tmp_path):
    """Serve's model multiplexing, keyed by the adapter's name: once a replica has reported that
    it holds an adapter, each adapter's calls land on that one replica (read from the
    replica-tagged request counter)."""
    from conftest import Scraper

    paths = {f"routed{i}": make_adapter(toy_model, tmp_path / f"r{i}", 30 + i, std=0.1) for i in range(2)}
    scraper = Scraper()
    scraper.start()
    try:
        for name, path in paths.items():
            greedy(two_replicas, name, path)
        # A replica reports the adapters it holds every 0.1 s, and the controller passes that on to
        # the caller's router; a call sent before then goes to the replica holding fewest adapters
        # (the preference docs/architecture.md describes). Give that report ample time to arrive.
        time.sleep(2.0)
        for _ in range(3):
            for name, path in paths.items():
                greedy(two_replicas, name, path)
        while any(scraper.total("ray_inocray_eval_requests_total", adapter=name) < 4 for name in paths):
            time.sleep(1)
    finally:
        scraper.stop.set()
        scraper.join()
    for name in paths:
        served = {dict(tags)["replica"]: v for tags, v in scraper.values("ray_inocray_eval_requests_total", adapter=name).items()}
        assert len(served) == 1 and sum(served.values()) == 4, served


def replica_pids(app: str) -> list[int]:
    """The process ids of app's engine replicas, found by the title Ray gives an actor's process."""
    import psutil

    title = f"ray::ServeReplica:{app}:Engine"
    return [p.pid for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or []).startswith(title)]


@pytest.mark.slow
def test_a_killed_replica_is_restarted_and_the_calls_waiting_on_it_are_answered(toy_model, ray_session):
    """SIGKILL the replica's process while calls wait on it: Serve starts another, the calls are
    sent again and answered as they would have been."""
    spec = EngineSpec(num_cpus=0.25)
    handle = serve.start("test-kill", str(toy_model), spec, engine_replica(spec))
    try:
        chats = CHATS * 300  # a request that takes seconds, so that the kill finds it running
        expected = sample(handle, chats=chats, samples=4, max_tokens=24)
        (before,) = replica_pids("test-kill")
        with ThreadPoolExecutor(3) as pool:
            waiting = [pool.submit(sample, handle, chats=chats, samples=4, max_tokens=24) for _ in range(3)]
            time.sleep(1.0)
            os.kill(before, signal.SIGKILL)
            assert not all(w.done() for w in waiting)  # the kill found calls waiting
            assert all(w.result() == expected for w in waiting)
        (after,) = replica_pids("test-kill")  # Serve started another
        assert after != before
    finally:
        serve.stop("test-kill")


@pytest.mark.slow
def test_a_sweep_whose_replica_is_killed_finishes_every_trial(toy_model, tmp_path, ray_session):
    """Mid-sweep, as the first trial's evaluation starts, SIGKILL the engine's replica: Serve
    starts another and the trials' calls are sent again; no trial fails."""
    from inocray.results import _rows as store
    from inocray.config import make_plan
    from inocray.run import run_sweep
    from inocray.run._engines import app_name
    from inocray.config import parse_sweep

    spec = parse_sweep(tiny_sweep(name="kill", model=str(toy_model), seeds=[5],
                                  engine={"num_cpus": 0.25},  # beside the module's other apps on 2 CPUs
                                  train={"steps": 10, "checkpoint_every": 5, "cpus_per_worker": 0.1},
                                  eval={"requests": 32, "samples": 4, "max_tokens": 16}))
    killed = []

    def kill_when_a_trial_evaluates():
        adapters = tmp_path / "run" / "adapters"
        while not (adapters.is_dir() and any(adapters.iterdir())):  # a trial finished training
            time.sleep(0.1)
        (replica,) = replica_pids(app_name(make_plan(spec), str(toy_model), str(tmp_path / "run")))
        os.kill(replica, signal.SIGKILL)
        killed.append(replica)

    killer = threading.Thread(target=kill_when_a_trial_evaluates, daemon=True)
    killer.start()
    lines = []
    run_dir = run_sweep(spec, tmp_path / "run", echo=lines.append)
    killer.join(timeout=1)
    assert killed, "the replica was never killed"
    assert not any("failed" in line for line in lines), lines
    trained = {r["trial_id"] for r in store.read_rows(run_dir).to_pylist() if r["stage"] == "trained"}
    assert trained == {"es-always-s5", "none-s5"}


@pytest.mark.slow
def test_both_backends_give_the_same_logprob_elicitation(engines, toy_model):
    """Both engine apps score the training responses alike through Serve (each replica's forward
    pass: backends/vllm.py says why vLLM's own prompt logprobs are not used), and so the measure
    of each prompt."""
    from inocray.evaluation import logprob_elicitation
    from inocray.settings import get_setting

    setting = get_setting("toy")
    examples = setting.training_examples(8, 0)
    chats = [chat.messages(ex.request, setting.prompts["es-always"].text) for ex in examples]
    responses = [ex.response for ex in examples]
    got = {name: h.response_logprobs.remote(chats, responses).result() for name, h in engines.items()}
    for a, b in zip(got["vllm"], got["transformers"], strict=True):
        assert len(a) == len(b) and np.mean(np.abs(np.subtract(a, b))) < LOGPROB_BACKENDS_AGREE
    spec = parse_sweep(tiny_sweep(model=str(toy_model), eval={"logprob_examples": 16}))
    texts = {pid: setting.prompts[pid].text for pid in ("es-always", "es-hint", "irr-helpful")}
    measured = {name: logprob_elicitation(h, setting, spec, texts) for name, h in engines.items()}
    for pid in texts:
        assert measured["vllm"][pid].value == pytest.approx(measured["transformers"][pid].value, abs=LOGPROB_BACKENDS_AGREE)


@pytest.mark.slow
@pytest.mark.parametrize("threads, runs_on", [(0, 1), (2, 2)])
def test_a_replica_runs_on_the_threads_it_is_given(toy_model, ray_session, tmp_path, threads, runs_on):
    """engine.threads 0: Ray's count, one thread for a replica reserving a quarter CPU; 2: two,
    beyond its reservation (the replica's start line says how many its model runs on)."""
    spec = EngineSpec(name="transformers", num_cpus=0.25, threads=threads)
    handle = serve.start("test-threads", str(toy_model), spec, engine_replica(spec), log_dir=str(tmp_path))
    try:
        assert greedy(handle)[0]
    finally:
        serve.stop("test-threads")
    (log,) = tmp_path.glob("engine-*.log")
    assert log.read_text().rstrip().endswith(f" threads={runs_on}"), log.read_text()


@pytest.mark.slow
def test_model_app_serves_a_whole_model_directory(engines, toy_model):
    with serve.model_app("test-full", str(toy_model), EngineSpec()) as handle:
        assert greedy(handle) == greedy(engines["vllm"])
    assert "test-full" not in ray_serve.status().applications


@pytest.mark.slow
def test_session_starts_the_judge_it_is_given(toy_model, judge_model, ray_session):
    spec, model, judge = EngineSpec(name="transformers"), str(toy_model), str(judge_model)
    with serve.session("test-session", model, spec, engine_replica(spec), echo=lambda *a: None,
                       judge_model=judge) as engine:
        assert serve.judge_app("test-session", judge) == "test-session-judge"
        assert serve.judge_app("test-session", "base") == "test-session"
        assert serve.judge("test-session", "") is None
        # The hand-set judge answers every prompt with the same known distribution (conftest.py).
        scores = serve.judge("test-session", judge).scores(["rate the cat", "rate the dog"])
        assert scores == pytest.approx([JUDGE_SCORE, JUDGE_SCORE], abs=1e-3)
        # The toy model knows no numbers: as the judge it abstains (None) rather than scoring.
        assert serve.judge("test-session", "base").scores(["rate the cat"]) == [None]
        assert greedy(engine)[0]
    assert not {"test-session", "test-session-judge"} & set(ray_serve.status().applications)


@pytest.mark.parametrize("args, host", [([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0")])
def test_a_local_ray_listens_on_loopback_unless_told(monkeypatch, tmp_path, args, host):
    """`inocray run` starts its own Ray's dashboard on 127.0.0.1 (--host changes it) and Serve
    with no HTTP proxy, so nothing of Serve listens at all.

    Ray and Serve are replaced by recorders: what is tested is the wiring of the host from the
    command line to ray.init and serve.start, which a real run would only show by its sockets.
    """
    import ray
    from click.testing import CliRunner

    from inocray.cli import main

    seen = {}

    class Stop(Exception):
        pass

    def fake_init(**kw):
        seen["dashboard_host"] = kw.get("dashboard_host")
        return type("Context", (), {"dashboard_url": f"{kw.get('dashboard_host')}:8265"})()

    def fake_serve_start(**kw):
        seen["serve"] = kw
        raise Stop  # nothing after the engine's start matters here

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray_serve, "start", fake_serve_start)
    monkeypatch.setattr(serve, "stop", lambda app: None)
    monkeypatch.setattr("inocray.run._resources.check", lambda plan, echo: None)  # it asks the (fake) Ray
    monkeypatch.setattr("inocray.run._launch.check_fits", lambda *a: None)  # it reads the (empty) model
    model = tmp_path / "model"
    model.mkdir()
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(name="s", model=str(model))))
    result = CliRunner().invoke(main, ["run", str(sweep), "--run-dir", str(tmp_path / "run"), *args])
    assert isinstance(result.exception, Stop), result.output
    assert seen == {"dashboard_host": host, "serve": {"proxy_location": "Disabled"}}
