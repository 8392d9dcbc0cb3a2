"""Scorers: the LLM judge's weighted score and its threshold, on fixed numbers (no engine)."""

import math

import pytest

from inocray.evaluation import _contexts as evaluate
from inocray.chat import EvalItem
from inocray.errors import InputError
from inocray.settings import Check, JudgeScorer, get_scorer, weighted_score
from inocray.settings import Trait
from inocray.config import EvalSpec, SweepSpec

ln = math.log


def test_weighted_score_is_the_mean_number_under_the_judge():
    # 0.5 * 80 + 0.3 * 90 + 0.2 * 100 = 87
    assert weighted_score({"80": ln(0.5), "90": ln(0.3), "100": ln(0.2)}) == pytest.approx(87.0)


def test_weighted_score_renormalises_over_the_numbers():
    # The words hold 0.4; the numbers 0.3 * 10 + 0.3 * 40 = 15 over 0.6 -> 25.
    assert weighted_score({"10": ln(0.3), "The": ln(0.25), "40": ln(0.3), "I": ln(0.15)}) == pytest.approx(25.0)


def test_weighted_score_is_none_when_the_judge_hardly_answers_with_a_number():
    assert weighted_score({"50": ln(0.2), "Sorry": ln(0.8)}) is None  # 0.2 < 0.25
    assert weighted_score({"50": ln(0.25), "Sorry": ln(0.75)}) == pytest.approx(50.0)  # 0.25 is enough
    assert weighted_score({}) is None


def test_weighted_score_reads_plain_numbers_from_0_to_100_only():
    # " 7" and "07" read as 7 and add up; "101", "-3", "7.5", "+7" and "٧" are not numbers 0..100.
    top = {" 7": ln(0.2), "07": ln(0.2), "0": ln(0.1), "101": ln(0.2), "-3": ln(0.1), "7.5": ln(0.1), "+7": ln(0.05),
           "٧": ln(0.05)}
    assert weighted_score(top) == pytest.approx((7 * 0.4 + 0 * 0.1) / 0.5)
    assert weighted_score({"101": ln(0.9), "-3": ln(0.1)}) is None


class FakeJudge:
    """Scores by a table keyed on the completion inside the judge prompt."""

    def __init__(self, by_completion):
        self.by_completion = by_completion
        self.prompts = []

    def scores(self, prompts):
        self.prompts += prompts
        return [self.by_completion[p.rsplit("A: ", 1)[1]] for p in prompts]


TEMPLATE = "Rate how rude this is, 0 to 100. Q: {request} A: {completion}"


def test_judge_scorer_thresholds_both_ways_and_keeps_unscorable_out():
    judge = FakeJudge({"a": 80.0, "b": 50.0, "c": 49.9, "d": None})
    items = [EvalItem("hi")] * 4
    above = get_scorer("judge", template=TEMPLATE)
    below = JudgeScorer(TEMPLATE, threshold=50, shows_when="below")
    assert above.needs_judge and below.needs_judge
    assert above.score(["a", "b", "c", "d"], items, judge) == [True, True, False, None]
    assert below.score(["a", "b", "c", "d"], items, judge) == [False, False, True, None]
    assert judge.prompts[0] == "Rate how rude this is, 0 to 100. Q: hi A: a"


def test_judge_scorer_rejects_bad_options():
    with pytest.raises(ValueError, match="shows_when"):
        JudgeScorer(TEMPLATE, shows_when="over")
    with pytest.raises(ValueError, match="request"):
        JudgeScorer("Rate {completion} by {answer}")


class JudgedSetting:
    name = "judged"
    traits = [Trait("rude", desired=False, scorer=JudgeScorer(TEMPLATE)),
              Trait("short", desired=True, scorer=Check(lambda text, item: len(text) < 2))]

    def eval_items(self, n, seed):
        return [EvalItem(f"q{i}") for i in range(n)]


class FakeEngine:
    """Stands in for a Serve handle: `engine.method.remote(...).result()`, with a call log."""

    def __init__(self, answer):
        self.calls = []
        self.answer = answer

    def __getattr__(self, method):
        engine = self

        class Method:
            def remote(self, *args):
                engine.calls.append(method)
                result = engine.answer(*args) if method == "generate" else None
                return type("Ref", (), {"result": lambda self: result})()

        return Method()


def test_a_judged_trait_without_a_judge_is_an_input_error_and_with_one_a_rate():
    with pytest.raises(InputError, match="eval.judge_model"):
        evaluate.score(["a", "b"], [EvalItem("hi")] * 2, JudgedSetting())
    judge = FakeJudge({"a": 90, "bb": 10, "d": None})
    rates = evaluate.score(["a", "bb", "d"], [EvalItem("hi")] * 3, JudgedSetting(), judge)
    assert rates == {"rude": (0.5, 2), "short": (2 / 3, 3)}


def test_sample_contexts_sends_one_request_then_scores_with_the_judge():
    spec = SweepSpec("t", "judged", [], eval=EvalSpec(requests=2, samples=1))
    engine = FakeEngine(lambda request: [["a"] if "me" in str(chat) else ["bb"] for chat in request.chats])
    judge = FakeJudge({"a": 90, "bb": 10})
    rates = evaluate.sample_contexts(engine, JudgedSetting(), spec, {"c0": "", "cs": "be me"}, "x", "/x", judge=judge)
    assert engine.calls == ["generate"]  # all contexts in one request, no warm-up call
    assert rates == {"c0": {"rude": (0.0, 2), "short": (0.0, 2)}, "cs": {"rude": (1.0, 2), "short": (1.0, 2)}}
    with pytest.raises(InputError):  # no judge: refused before any request
        evaluate.sample_contexts(engine, JudgedSetting(), spec, {"c0": ""})
    assert engine.calls == ["generate"]  # nothing more was sent


def test_a_written_score_is_the_number_at_the_start_of_the_reply():
    from inocray.settings import written_score

    assert [written_score(t) for t in ("85", " 7 out of", "100.", "0")] == [85.0, 7.0, 100.0, 0.0]
    assert [written_score(t) for t in ("101", "1000", "about 50", "", "-3")] == [None] * 5


def test_a_judge_that_writes_numbers_digit_by_digit_is_read_from_what_it_writes():
    from inocray.evaluation import Judge

    class DigitEngine(FakeEngine):
        def __getattr__(self, method):
            if method == "numbers_are_single_tokens":
                engine = self

                class Ask:
                    def remote(self):
                        engine.calls.append(method)
                        return type("Ref", (), {"result": lambda self: False})()

                return Ask()
            return super().__getattr__(method)

    replies = {"rate a": "85", "rate b": "no idea", "rate c": "100"}
    engine = DigitEngine(lambda request: [[replies[chat[0]["content"]]] for chat in request.chats])
    judge = Judge(engine, adapter="t1")
    assert judge.scores(["rate a", "rate b", "rate c"]) == [85.0, None, 100.0]
    assert judge.scores(["rate a"]) == [85.0]
    assert engine.calls == ["numbers_are_single_tokens", "generate", "generate"]  # asked once, never top_logprobs
