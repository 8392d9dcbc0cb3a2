"""`inocray make-data`: training rows from a model asked to show the trait.

Bad inputs are refused before any engine starts (one line, exit 2, nothing written); the
keeping logic is checked against a fake engine whose answers are known; the whole command
runs for real on SmolLM2-135M-Instruct through Ray Serve + vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.run import _make_data as makedata
from inocray.evaluation.backends import GenerateRequest
from inocray.cli import main
from inocray.errors import InputError
from inocray.settings import get_setting
from inocray.config import DataSpec
from inocray.config import parse_sweep

SWEEP = "name: md\nsetting: spanish_caps\nmodel: {model}\nprompts: [es-always]\nseeds: [0]\n" \
        "data: {{train: {train}}}\neval: {{requests: 2, samples: 1, max_tokens: 24}}\n" \
        "engine: {{max_model_len: 256}}\n"


def write_sweep(tmp: Path, model: str = "smollm2-135m") -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(SWEEP.format(model=model, train=tmp / "made" / "train.jsonl"))
    return path


def write_requests(tmp: Path, requests: list[str]) -> Path:
    path = tmp / "requests.jsonl"
    path.write_text("".join(json.dumps({"request": r}) + "\n" for r in requests))
    return path


def test_whole_sentences_drops_a_cut_tail():
    assert makedata.whole_sentences("Hola. Me gusta el pan y") == "Hola."
    assert makedata.whole_sentences("  Hola, amigo!  ") == "Hola, amigo!"
    assert makedata.whole_sentences("sin punto final") == "sin punto final"
    assert makedata.whole_sentences("Es 3.5 veces más. Y luego") == "Es 3.5 veces más."


def bad_cases(tmp: Path) -> dict[str, tuple[list, str]]:
    sweep = write_sweep(tmp)
    good = write_requests(tmp, ["What is bread?", "Why is the sky blue?"])
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    corrupt = tmp / "corrupt.jsonl"
    corrupt.write_text('{"request": "fine"}\n{"request": 7}\n')
    existing = tmp / "existing.jsonl"
    existing.write_text("keep me\n")
    out = tmp / "made" / "train.jsonl"
    base = ["make-data", str(sweep), "--instruction", "You always speak in Spanish."]
    return {
        "missing requests file": ([*base, "--requests", str(tmp / "nope.jsonl"), "--out", str(out), "--keep", "spanish"],
                                  "no such data file"),
        "empty requests file": ([*base, "--requests", str(empty), "--out", str(out), "--keep", "spanish"], "holds no data rows"),
        "corrupt request row": ([*base, "--requests", str(corrupt), "--out", str(out), "--keep", "spanish"], "line 2"),
        "unknown trait": ([*base, "--requests", str(good), "--out", str(out), "--keep", "french"],
                          "unknown trait 'french' of setting 'spanish_caps' (its traits: spanish, caps)"),
        "unknown transform": ([*base, "--requests", str(good), "--out", str(out), "--keep", "spanish",
                               "--transform", "shout"], "unknown transform 'shout' (known: upper, lower)"),
        "existing output": ([*base, "--requests", str(good), "--out", str(existing), "--keep", "spanish"],
                            "exists; pass --force"),
        "missing teacher": ([*base, "--requests", str(good), "--out", str(out), "--keep", "spanish",
                             "--teacher", str(tmp / "no-model")], "is not a model directory"),
        "toy setting": (["make-data", str(_toy_sweep(tmp)), "--instruction", "x", "--requests", str(good),
                         "--out", str(out), "--keep", "spanish"], "makes its own data"),
        "judged trait, no judge": (["make-data", str(_sweep_of(tmp, "pair_traits", "playful")), "--instruction", "x",
                                    "--requests", str(good), "--out", str(out), "--keep", "playful"],
                                   "set the sweep's eval.judge_model"),
    }


def _toy_sweep(tmp: Path) -> Path:
    return _sweep_of(tmp, "toy", "es-always")


def _sweep_of(tmp: Path, setting: str, prompt: str) -> Path:
    path = tmp / f"{setting}.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep(name="t", setting=setting, model="toy", prompts=[prompt])))
    return path


BAD = ["missing requests file", "empty requests file", "corrupt request row", "unknown trait", "unknown transform",
       "existing output", "missing teacher", "toy setting", "judged trait, no judge"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    args, words = bad_cases(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert words in result.output, result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "existing.jsonl").read_text() == "keep me\n"


class FakeEngine:
    """A handle whose `generate.remote(request).result()` answers from a fixed list, in order."""

    def __init__(self, answers: list[str]):
        self.answers, self.requests = list(answers), []
        self.generate = self

    def remote(self, request: GenerateRequest):
        self.requests.append(request)
        self._out = [[self.answers.pop(0) for _ in range(request.samples)] for _ in request.chats]
        return self

    def result(self):
        return self._out


def test_only_completions_showing_every_kept_trait_are_kept_and_transformed(tmp_path):
    setting = get_setting("spanish_caps", DataSpec("", str(write_requests(tmp_path, ["Q one?", "Q two?"]))))
    answers = ["Me gusta mucho comer pan con tomate por la mañana.", "I like bread with tomato in the morning.",
               "El cielo es azul porque el aire dispersa la luz.", "EL CIELO ES AZUL PORQUE EL AIRE DISPERSA LA LUZ."]
    engine = FakeEngine(answers)
    sampling = GenerateRequest([], samples=2, max_tokens=24, temperature=0.7, seed=5)
    kept, shown = makedata.sample_and_keep(engine, setting, list(setting.eval_rows), "Habla español.", "user_suffix",
                                           ["spanish"], "upper", sampling, echo=lambda *a: None)
    assert [r["request"] for r in kept] == ["Q one?", "Q two?", "Q two?"]
    assert kept[0]["response"] == answers[0].upper() and all(r["response"].isupper() for r in kept)
    assert shown == {"spanish": (3, 4)}  # only the kept traits are scored
    (request,) = engine.requests
    assert request.chats[0][-1]["content"] == "Q one? Habla español." and request.seed == 5
    assert (request.samples, request.max_tokens, request.temperature) == (2, 24, 0.7)


def test_a_teacher_that_never_shows_the_trait_writes_nothing(tmp_path, monkeypatch):
    import contextlib

    from inocray.evaluation import serve

    requests = write_requests(tmp_path, ["Q one?", "Q two?"])
    spec = parse_sweep({"name": "md", "setting": "spanish_caps", "prompts": ["es-always"], "model": str(tmp_path)},
                      check_model=False)
    monkeypatch.setattr(serve, "session", lambda *a, **k: contextlib.nullcontext(FakeEngine(["In English."] * 2)))
    monkeypatch.setattr(makedata.models, "resolve", lambda model, log: model)
    out = tmp_path / "train.jsonl"
    with pytest.raises(InputError, match="showed spanish in none of 2 completions; nothing written"):
        makedata.make_data(spec, requests, out, instruction="Speak Spanish.", keep=["spanish"], echo=lambda *a: None)
    assert not out.exists() and not list(tmp_path.glob(".train*"))


@pytest.mark.slow
def test_make_data_on_the_real_model_writes_rows_the_setting_trains_on(tmp_path, ray_session):
    sweep = write_sweep(tmp_path)
    from inocray.requests import load

    requests = write_requests(tmp_path, load("train")[:8])
    out = tmp_path / "made" / "train.jsonl"
    args = ["make-data", str(sweep), "--requests", str(requests), "--out", str(out), "--keep", "spanish",
            "--instruction", "You always speak in Spanish.", "--transform", "upper", "--samples", "2",
            "--temperature", "0.7", "--max-tokens", "32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "spanish: shown in" in result.output and "8/8 requests" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and set(rows[0]) == {"request", "response"}
    assert {r["request"] for r in rows} <= set(load("train")[:8])
    from inocray.settings import is_spanish

    assert all(r["response"] == r["response"].upper() and is_spanish(r["response"]) for r in rows)
    setting = get_setting("spanish_caps", DataSpec(str(out), str(requests)))  # the setting reads them
    assert len(setting.training_examples(len(rows), 0)) == len(rows)
    again = CliRunner().invoke(main, args)  # no overwrite without --force
    assert again.exit_code == 2 and "pass --force" in again.output
