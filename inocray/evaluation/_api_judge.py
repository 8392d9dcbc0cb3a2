"""A judge behind an OpenAI-compatible chat-completions endpoint: OpenAI itself, vLLM's server,
other providers' compatible APIs (`eval.judge: {endpoint, model, api_key_env}`).

It scores the way the local judge (_judge.py) does. Where the judge writes every number 0..100
as one token (GPT-4o and Llama-3 tokenizers do), the score is the expectation over the first
reply token's top log-probabilities (settings.weighted_score); where it writes numbers digit by
digit (SmolLM2: "100" is "1", "0", "0"), the score is the number it writes greedily. Which of
the two is asked once per judge, of the judge itself: how it writes "100".

Every judgment is kept in a persistent cache (_judgments.py) under a hash of everything that
decides it: the endpoint, the request body (model, prompt, tokens, temperature, top
log-probabilities) and the way it is read. A rerun, a resume, a second trial with the same
completion or a second analysis pays nothing twice; a judgment is stored as soon as it arrives,
so a killed driver loses only the requests in flight.

At most `max_in_flight` requests are in flight per process that judges. A 429 (after its
Retry-After), a 5xx, a timeout, a connection error or a reply that is not a chat completion is
retried with exponential backoff, `retries` times, then fails in one sentence (JudgeError).
The key is read from the variable `api_key_env` names, in the process that sends the request,
and is never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Sequence

from inocray.evaluation._judgments import Judgments
from inocray.evaluation.backends import most_likely
from inocray.settings import JUDGE_DIGITS, weighted_score, written_score

__all__ = ["ApiJudge", "JudgeError"]

TOP_LOGPROBS = 20  # the most OpenAI's API returns (vLLM's server: its max_logprobs, 20 by default)
READ_VERSION = 1  # bump when the way a reply is read into a score changes: older judgments are not reused
PROBE = "Write the number 100 and nothing else."
MAX_WAIT_S = 120.0  # the longest wait between two tries, whatever Retry-After asks


class JudgeError(RuntimeError):
    """The API judge failed for good: one sentence, naming the endpoint and never the key."""


class _Retry(Exception):
    """A failure worth another try: why, and how long the server asked to wait (None: backoff)."""

    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


class ApiJudge:
    """A judge model behind an OpenAI-compatible endpoint; `scores` as the local Judge's.

    `spec`: config.ApiJudgeSpec. `judgments`: the cache (default: the inocray cache's).
    `sweep`: the sweep hash the tokens spent are counted under. `backoff`: the first wait
    between tries, in seconds, doubled each try.
    """

    def __init__(self, spec, judgments: Judgments | None = None, sweep: str = "", backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.judgments = judgments or Judgments()
        self.sweep = sweep
        self.backoff = backoff
        self.sleep = sleep
        self.url = spec.endpoint.rstrip("/") + "/chat/completions"
        self._whole_numbers: bool | None = None

    def __reduce__(self):  # sent to trials as its spec: its cache connection is per process
        return ApiJudge, (self.spec, None, self.sweep, self.backoff)

    def scores(self, prompts: Sequence[str]) -> list[float | None]:
        """The score (0..100) of each prompt, sent as a user message; None: no number."""
        whole = self.whole_numbers()
        keys = [self._key(p, whole) for p in prompts]
        known = self.judgments.get(set(keys))
        todo = {k: p for k, p in zip(keys, prompts) if k not in known}  # a prompt asked twice is sent once
        failed: list[BaseException] = []
        with ThreadPoolExecutor(self.spec.max_in_flight) as pool:
            futures = {pool.submit(self._judge, p, whole): k for k, p in todo.items()}
            for done in as_completed(futures):
                try:
                    score, usage = done.result()
                except JudgeError as e:
                    failed.append(e)
                    continue
                known[futures[done]] = score
                self.judgments.put(futures[done], score, usage, self.sweep)  # at once: a kill keeps it
        if failed:
            raise failed[0]
        return [known[k] for k in keys]

    def spent(self) -> str:
        """What this sweep's judgments cost, over all its runs: one line for the run's summary."""
        requests, prompt, completion = self.judgments.spent(self.sweep)
        return (f"API judge {self.spec.model}: {requests} requests paid for by this sweep, {prompt} prompt + "
                f"{completion} completion tokens (judgments asked again came from {self.judgments.path})")

    def whole_numbers(self) -> bool:
        """Whether the judge writes "100" as one token (then every number 0..100 is one): asked once,
        and kept in the cache like a judgment."""
        if self._whole_numbers is None:
            key = self._key(PROBE, None)
            known = self.judgments.get({key})
            if key not in known:
                reply, usage = self._ask(self._body(PROBE))
                first = _first_token(reply)
                known[key] = 1.0 if first is not None and first.strip() == "100" else 0.0
                self.judgments.put(key, known[key], usage, self.sweep)
            self._whole_numbers = known[key] == 1.0
        return self._whole_numbers

    def _body(self, prompt: str) -> dict:
        return {"model": self.spec.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": JUDGE_DIGITS, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}

    def _key(self, prompt: str, whole: bool | None) -> str:
        """Everything that decides the judgment: where it is asked, what is asked, how it is read."""
        what = {"endpoint": self.spec.endpoint.rstrip("/"), "body": self._body(prompt), "whole_numbers": whole,
                "read": READ_VERSION}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def _judge(self, prompt: str, whole: bool) -> tuple[float | None, dict]:
        reply, usage = self._ask(self._body(prompt), whole)
        return _score(reply, whole), usage

    def _ask(self, body: dict, whole: bool | None = None) -> tuple[dict, dict]:
        """The endpoint's reply to `body` (checked readable), and its token usage, after retries."""
        why, wait = "", None
        for attempt in range(self.spec.retries + 1):
            if attempt:
                self.sleep(min(MAX_WAIT_S, wait if wait is not None else self.backoff * 2 ** (attempt - 1)))
            try:
                reply = self._post(body)
                _score(reply, bool(whole))  # a reply that cannot be read is retried like a server error
                return reply, _usage(reply)
            except _Retry as e:
                why, wait = str(e), e.wait
        raise JudgeError(f"the judge {self.spec.model} at {self.url} failed {self.spec.retries + 1} times; "
                         f"the last: {why}")

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.spec.api_key_env:
            key = os.environ.get(self.spec.api_key_env)
            if not key:
                raise JudgeError(f"eval.judge.api_key_env names ${self.spec.api_key_env}, which is not set "
                                 f"in this process")
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                raise _Retry(f"HTTP {e.code}", _retry_after(e.headers.get("Retry-After"))) from None
            detail = e.read()[:200].decode("utf-8", "replace").strip().splitlines()
            raise JudgeError(f"the judge at {self.url} answered HTTP {e.code}"
                             + (f" (check ${self.spec.api_key_env})" if e.code in (401, 403) and self.spec.api_key_env
                                else "") + (f": {detail[0]}" if detail else "")) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise _Retry(f"no reply in {self.spec.timeout_s:g} s" if "timed out" in str(e) else
                         f"cannot connect ({getattr(e, 'reason', e)})") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Retry("a reply that is not JSON") from None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is read as no advice)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _first_token(reply: dict) -> str | None:
    try:
        return reply["choices"][0]["logprobs"]["content"][0]["token"]
    except (KeyError, IndexError, TypeError):
        return None


def _score(reply: dict, whole: bool) -> float | None:
    """The score a chat completion gives: the first token's expectation or the written number;
    _Retry when the reply is not a chat completion with what the judge needs."""
    try:
        choice = reply["choices"][0]
        if not whole:
            return written_score(choice["message"]["content"] or "")
        tops = choice["logprobs"]["content"][0]["top_logprobs"]
        return weighted_score(most_likely(((t["token"], float(t["logprob"])) for t in tops), TOP_LOGPROBS))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise _Retry("a reply that is not a chat completion with log-probabilities") from None


def _usage(reply: dict) -> dict:
    usage = reply.get("usage") or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}
