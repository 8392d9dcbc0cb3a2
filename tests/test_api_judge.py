"""The API judge against a small OpenAI-compatible server on 127.0.0.1, scripted to answer
429, 500, slow replies and malformed bodies: scores unchanged by the retries, nothing judged
twice, the cache kept across a restart and a killed process, the key never written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from conftest import Scripted, tiny_sweep

from inocray.config import parse_sweep
from inocray.errors import InputError
from inocray.evaluation import ApiJudge, JudgeError, Judgments
from inocray.settings import get_setting

SECRET = "sk-test-secret-0123456789"


@pytest.fixture
def server():
    s = Scripted()
    yield s
    s.shutdown()


def api_judge(url: str, tmp_path, waits: list | None = None, **judge) -> ApiJudge:
    doc = tiny_sweep(eval={"judge": {"endpoint": url, "model": "judge-1", "timeout_s": 0.5, "retries": 3} | judge})
    spec = parse_sweep(doc, check_model=False)
    return ApiJudge(spec.eval.judge, Judgments(tmp_path / "judgments.sqlite"), sweep=spec.hash(), backoff=0.01,
                    sleep=(waits.append if waits is not None else lambda s: None))


PROMPTS = [f"rate this, score {n}" for n in (0, 7, 40, 73, 90)]


def test_scores_are_the_expectation_over_the_first_token_or_the_written_number(tmp_path):
    whole, digits = Scripted(whole=True), Scripted(whole=False)
    try:
        assert api_judge(whole.url, tmp_path / "a").scores(PROMPTS) == [2.5, 9.5, 42.5, 75.5, 92.5]
        # "100" comes back as "1", "0", "0": the judge writes numbers digit by digit, so the written number counts
        assert api_judge(digits.url, tmp_path / "b").scores(PROMPTS) == [0.0, 7.0, 40.0, 73.0, 90.0]
    finally:
        whole.shutdown()
        digits.shutdown()


def test_faults_are_retried_and_change_no_score_and_nothing_is_judged_twice(server, tmp_path):
    clean = api_judge(server.url, tmp_path / "clean").scores(PROMPTS)
    server.answered.clear()
    server.faults = {PROMPTS[0]: ["429", "429"], PROMPTS[1]: ["500"], PROMPTS[2]: ["slow"], PROMPTS[3]: ["malformed"],
                     PROMPTS[4]: ["nojson", "500"]}
    waits = []
    judge = api_judge(server.url, tmp_path / "faulty", waits)
    assert judge.scores(PROMPTS + PROMPTS[:2]) == clean + clean[:2]  # a prompt asked twice is sent once
    assert waits.count(0.3) == 2  # the 429s' Retry-After, honoured
    assert all(server.answered[p] == 1 for p in PROMPTS), server.answered
    # Asked again, by this judge or a new one on the same cache (a restart): no request at all.
    before = sum(server.requests.values())
    assert judge.scores(PROMPTS) == clean
    assert api_judge(server.url, tmp_path / "faulty").scores(list(reversed(PROMPTS))) == list(reversed(clean))
    assert sum(server.requests.values()) == before
    # Tokens paid: 5 judgments and the probe, 10 prompt tokens and 1 completion token each.
    assert judge.judgments.spent(judge.sweep) == (6, 60, 6)
    assert judge.spent().startswith("API judge judge-1: 6 requests paid for by this sweep, 60 prompt + 6 completion tokens")


def test_after_the_last_retry_the_failure_is_one_sentence(server, tmp_path):
    server.faults = {PROMPTS[1]: ["500"] * 9}
    judge = api_judge(server.url, tmp_path)
    with pytest.raises(JudgeError) as e:
        judge.scores(PROMPTS)
    assert str(e.value) == f"the judge judge-1 at {server.url}/chat/completions failed 4 times; the last: HTTP 500"
    assert server.requests[PROMPTS[1]] == 4
    # the others were stored as they came: the retry of the sweep pays only for the failed one
    server.faults.clear()
    before = sum(server.requests.values())
    judge.scores(PROMPTS)
    assert sum(server.requests.values()) == before + 1


def test_requests_in_flight_are_bounded(tmp_path):
    slow = Scripted(delay=0.2)
    try:
        api_judge(slow.url, tmp_path, max_in_flight=3).scores([f"x score {n}" for n in range(12)])
        assert slow.most_in_flight == 3
    finally:
        slow.shutdown()


def test_the_key_is_read_from_its_variable_and_written_nowhere(server, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    judge = api_judge(server.url, tmp_path, api_key_env="JUDGE_KEY")
    judge.scores(PROMPTS)
    assert server.authorization == {f"Bearer {SECRET}"}
    server.faults = {"z score 1": ["401"]}
    with pytest.raises(JudgeError, match=r"answered HTTP 401 \(check \$JUDGE_KEY\)") as e:
        judge.scores(["z score 1"])
    assert server.requests["z score 1"] == 1  # a refused key is not retried
    spec = parse_sweep(tiny_sweep(eval={"judge": {"endpoint": server.url, "model": "m", "api_key_env": "JUDGE_KEY"}}))
    written = [p.read_bytes() for p in tmp_path.iterdir()] + [json.dumps(spec.record()).encode(), str(e.value).encode()]
    out, err = capfd.readouterr()
    assert not any(SECRET.encode() in w for w in written) and SECRET not in out + err


def test_a_killed_process_loses_only_the_judgments_in_flight(tmp_path):
    slow = Scripted(delay=0.15)
    prompts = [f"k score {n}" for n in range(40)]
    code = (f"from inocray.config import parse_sweep\nfrom inocray.evaluation import ApiJudge, Judgments\n"
            f"spec = parse_sweep({{'name': 'k', 'setting': 'toy', 'prompts': ['es-always'], 'eval': {{'judge': "
            f"{{'endpoint': {slow.url!r}, 'model': 'm', 'max_in_flight': 2}}}}}}, check_model=False)\n"
            f"ApiJudge(spec.eval.judge, Judgments({str(tmp_path / 'j.sqlite')!r})).scores({prompts!r})\n")
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ | {"PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 60
        while sum(slow.answered.values()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        kept = Judgments(tmp_path / "j.sqlite")
        spec = parse_sweep(tiny_sweep(eval={"judge": {"endpoint": slow.url, "model": "m", "max_in_flight": 2}}),
                           check_model=False)
        judge = ApiJudge(spec.eval.judge, kept)
        stored = {p for p in prompts if judge._key(p, True) in kept.get({judge._key(p, True)})}
        assert 8 <= len(stored) < 40
        answered = Counter(slow.answered)
        judge.scores(prompts)
        again = {p for p in prompts if slow.answered[p] > answered[p]}
        assert again == set(prompts) - stored  # the stored ones were not asked again
    finally:
        child.kill()
        slow.shutdown()


@pytest.mark.parametrize("name", ["toxicity_cmv", "emergent_misalignment", "pair_traits", "backdoor"])
def test_a_judged_setting_scores_its_data_with_the_api_judge(server, tmp_path, name):
    """The API judge stands where the local one does: each judged setting's scorer asks it."""
    from inocray.evaluation import data_rates

    class Fixed(ApiJudge):
        def scores(self, prompts):  # whatever the setting's template asks, the server answers 90
            return super().scores([f"{p[:40]} score 90" for p in prompts])

    setting = get_setting(name)
    prompt = next(p for p, v in setting.prompts.items() if v.role != "ptst")
    spec = parse_sweep(tiny_sweep(setting=name, prompts=[prompt], train={"examples": 8},
                                  eval={"judge": {"endpoint": server.url, "model": "judge-1"}}), check_model=False)
    judge = Fixed(spec.eval.judge, Judgments(tmp_path / "j.sqlite"), sweep=spec.hash())
    rates = data_rates(setting, spec, judge)
    judged = [t.name for t in setting.traits if t.scorer.needs_judge]
    assert judged and all(rates[t][1] > 0 for t in judged), rates
    assert sum(server.answered.values()) > 1  # the probe and the judgments


@pytest.mark.parametrize("judge, says", [
    ({"endpoint": "api.openai.com/v1", "model": "m"}, "field 'eval.judge.endpoint' must be the API's http(s) base URL"),
    ({"endpoint": "https://api.openai.com/v1"}, "field 'eval.judge.model' must name the model"),
    ({"endpoint": "https://x/v1", "model": "m", "api_key_env": "sk-abc def"}, "must be the name of an environment"),
    ({"endpoint": "https://x/v1", "model": "m", "api_key_env": "NOT_SET_ANYWHERE"}, "names $NOT_SET_ANYWHERE, which is not set"),
    ({"endpoint": "https://x/v1", "model": "m", "max_in_flight": 0}, "field 'eval.judge.max_in_flight' must be positive"),
])
def test_a_bad_api_judge_is_one_sentence(judge, says):
    with pytest.raises(InputError) as e:
        parse_sweep(tiny_sweep(eval={"judge": judge}))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_an_api_judge_beside_a_judge_model_is_refused_and_an_absent_one_keeps_the_hash():
    with pytest.raises(InputError, match="cannot be given beside eval.judge_model"):
        parse_sweep(tiny_sweep(eval={"judge_model": "base", "judge": {"endpoint": "https://x/v1", "model": "m"}}))
    assert parse_sweep(tiny_sweep()).hash() == parse_sweep(tiny_sweep(eval={"judge": {}})).hash()


def test_the_judgments_file_follows_its_own_variable_apart_from_the_model_cache(tmp_path, monkeypatch):
    """On a cluster the model cache is shared (NFS) and the judgments' SQLite file must not be:
    INOCRAY_JUDGMENTS puts it on the node's own disk (cluster.yaml sets it)."""
    monkeypatch.setenv("INOCRAY_CACHE", str(tmp_path / "shared"))
    monkeypatch.delenv("INOCRAY_JUDGMENTS", raising=False)
    assert Judgments().path == tmp_path / "shared" / "judgments.sqlite"
    monkeypatch.setenv("INOCRAY_JUDGMENTS", str(tmp_path / "node" / "j.sqlite"))
    assert Judgments().path == tmp_path / "node" / "j.sqlite" and (tmp_path / "node" / "j.sqlite").exists()
    setup = "\n".join(yaml.safe_load(open("cluster.yaml"))["setup_commands"])
    assert "INOCRAY_JUDGMENTS=$HOME/" in setup and "/mnt/shared" not in setup.split("INOCRAY_JUDGMENTS=")[1].split("'")[0]
