"""`inocray screen`: the candidate file, the ranking on a real engine, and the predictions."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.analysis import fit_rows, read_runs
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.run import Candidate, read_candidates
from inocray.cli import main
from inocray.errors import InputError
from inocray.run import default_out_dir, screen
from inocray.config import parse_sweep

TOY_SWEEP = tiny_sweep(name="scr", seeds=None, train=None, eval=None)


def test_text_file_skips_blanks_and_comments_and_numbers_the_prompts(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("# strong\nYou always speak in Spanish.\n\n   Respond in Spanish.  \r\n# weak\nYou are friendly.\n")
    assert read_candidates(path) == [
        Candidate("c001", "You always speak in Spanish.", 2),
        Candidate("c002", "Respond in Spanish.", 4),
        Candidate("c003", "You are friendly.", 6),
    ]


def test_yaml_and_jsonl_files_keep_their_ids(tmp_path):
    items = [{"id": "strong", "text": "You always speak in Spanish."}, {"id": "weak-1", "text": "You are friendly."}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(items))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n\n")
    for name in ("c.yaml", "c.jsonl"):
        assert [(c.id, c.text) for c in read_candidates(tmp_path / name)] == [(i["id"], i["text"]) for i in items]


def test_the_shipped_toy_candidates_are_100_prompts_of_known_words():
    from inocray.models.toy.tokenizer import build_tokenizer

    candidates = read_candidates("sweeps/screen-toy-100.txt")
    tok = build_tokenizer()
    assert len(candidates) == 100 and candidates[-1].id == "c100"
    assert not [c.id for c in candidates if tok.unk_token_id in tok(c.text, add_special_tokens=False)["input_ids"]]


BAD_FILES = [
    # (file name, bytes, line named in the error, words of the error)
    ("empty.txt", b"# nothing here\n\n", None, "holds no candidate prompts"),
    ("nul.txt", b"You are friendly.\n\nYou\x00 shout.\n", 3, "control characters"),
    ("latin1.txt", b"You are friendly.\nYou speak espa\xf1ol.\n", 2, "not UTF-8"),
    ("twice.txt", b"You are friendly.\nYou shout.\nYou are friendly.\n", 3, "repeats the prompt of line 1"),
    ("ids.yaml", b"- {id: a, text: You shout.}\n- {id: b, text: You are friendly.}\n- {id: a, text: Spain.}\n", 3,
     "repeats the id 'a' of line 1"),
    ("badid.yaml", b"- id: ok\n  text: You shout.\n- id: not ok!\n  text: Spain.\n", 3, "has id 'not ok!'"),
    ("numid.yaml", b"- {id: 7, text: You shout.}\n", 1, "has id 7"),
    ("notext.yaml", b"- {id: a, text: You shout.}\n- {id: b}\n", 2, "exactly the keys id and text"),
    ("emptytext.yaml", b"- {id: a, text: '  '}\n", 1, "no prompt text"),
    ("map.yaml", b"a: You shout.\n", 1, "list of {id, text}"),
    ("broken.yaml", b"- {id: a, text: You shout.}\n- {id: b, text: [unclosed\n", 3, "not valid YAML"),
    ("broken.jsonl", b'{"id": "a", "text": "You shout."}\n{"id": "b", "text": \n', 2, "not valid JSON"),
    ("list.jsonl", b'{"id": "a", "text": "You shout."}\n["b", "Spain."]\n', 2, "exactly the keys id and text"),
    ("numtext.jsonl", b'{"id": "a", "text": 5}\n', 1, "no prompt text"),
]


@pytest.mark.parametrize("name, content, line, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_candidate_file_is_one_sentence_naming_file_and_line(tmp_path, name, content, line, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_candidates(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message
    if line is not None:
        assert f"line {line}" in message


def test_the_command_exits_2_on_bad_input_and_writes_nothing(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(TOY_SWEEP))
    bad = tmp_path / "c.txt"
    bad.write_bytes(b"You shout.\n\xff\n")
    out = tmp_path / "out"
    for args in (["--prompts", str(bad)], ["--prompts", str(tmp_path / "missing.txt")]):
        result = CliRunner().invoke(main, ["screen", str(sweep), *args, "--out", str(out)])
        assert result.exit_code == 2 and result.output.startswith("error: ") and not out.exists()


def _toy_run(run_dir, setting="toy"):
    """A simulated finished run with the toy setting's traits and a planted line for Spanish."""
    elicitation = {"p1": 0.1, "p2": 0.35, "p3": 0.6, "p4": 0.85}
    traits = [
        PlantedTrait("spanish", k=0.8, base_neutral=0.05, data_level=0.95, elicitation=elicitation),
        PlantedTrait("caps", k=0.1, base_neutral=0.05, data_level=0.95, desired=True),
    ]
    rows = simulate_rows(traits, {p: "inoculation" for p in elicitation}, seeds=2, setting=setting)
    return write_run(rows, run_dir)


def test_a_run_of_another_setting_cannot_predict(tmp_path):
    run = _toy_run(tmp_path / "run", setting="sim")
    with pytest.raises(InputError, match="setting sim, not of this sweep's setting 'toy'"):
        screen(parse_sweep(TOY_SWEEP), [Candidate("a", "You shout.", 1)], predict_from=run)


def test_screen_refuses_no_candidates_and_repeated_ids_before_starting_anything():
    spec = parse_sweep(TOY_SWEEP)
    with pytest.raises(InputError, match="no candidate prompts"):
        screen(spec, [])
    with pytest.raises(InputError, match="share an id"):
        screen(spec, [Candidate("a", "You shout.", 1), Candidate("a", "Spain.", 2)])


def test_a_logprob_screen_needs_its_examples_and_cannot_predict():
    cands = [Candidate("a", "You shout.", 1)]
    with pytest.raises(InputError, match="needs eval.logprob_examples above 0"):
        screen(parse_sweep(TOY_SWEEP | {"eval": {"logprob_examples": 0}}), cands, measure="both")
    with pytest.raises(InputError, match="--from predicts from sampled elicitation"):
        screen(parse_sweep(TOY_SWEEP), cands, predict_from="runs/x", measure="logprob")
    with pytest.raises(InputError, match="unknown measure"):
        screen(parse_sweep(TOY_SWEEP), cands, measure="guessed")


def test_the_output_directory_names_sweep_candidates_and_run():
    spec, cands = parse_sweep(TOY_SWEEP), [Candidate("a", "You shout.", 1)]
    assert default_out_dir(spec, cands) == default_out_dir(spec, list(cands))
    assert default_out_dir(spec, cands).name.startswith("screen-scr-")
    assert default_out_dir(spec, cands) != default_out_dir(spec, [Candidate("a", "Spain.", 1)])
    assert default_out_dir(spec, cands) != default_out_dir(spec, cands, predict_from="runs/x")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_screening_100_candidates_ranks_them_and_predicts_from_a_run(toy_model, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(name="scr", model=str(toy_model), seeds=None, train=None,
                                               eval={"requests": 4, "logprob_examples": 16})))
    run = _toy_run(tmp_path / "run")
    out = tmp_path / "out"
    # 50 candidates x 4 requests x 2 samples = 400 sequences of ~18 tokens: more than vLLM's CPU
    # token budget per step (4096), so the engine must split the work across steps.
    args = ["screen", str(sweep), "--prompts", "sweeps/screen-toy-100.txt", "--from", str(run),
            "--top", "5", "--batch", "50", "--out", str(out), "--measure", "both"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    sampled = [line.split("]")[0] for line in progress if "logprob:" not in line]
    logprob = [line.split("]")[0] for line in progress if "logprob:" in line]
    assert sampled == ["[ 50/100", "[100/100"]  # one line a request of 50 candidates
    assert logprob and logprob[-1] == "[100/100" and len(logprob) == len(set(logprob))
    assert all("elapsed" in line and "left" in line for line in progress)
    assert any(line.startswith("spanish: 100 candidates ranked by elicitation") for line in lines)
    assert any("predicted T(Ms,C0) [95%]" in line for line in lines) and "top 5 of 100 shown" in result.output
    assert f"wrote {out / 'screen.parquet'}" in lines and (out / "screen.csv").read_text().startswith('"rank","id"')

    rows = pq.read_table(out / "screen.parquet").to_pylist()
    for trait in ("spanish", "caps"):
        mine = [r for r in rows if r["trait"] == trait]
        assert len(mine) == 100 and sorted(r["id"] for r in mine) == [f"c{i:03d}" for i in range(1, 101)]
        assert [r["rank"] for r in mine] == list(range(1, 101))
        assert all(a["elicitation"] >= b["elicitation"] for a, b in zip(mine, mine[1:]))
        assert all(r["n"] == 4 * 2 and 0 <= r["elicitation"] <= 1 for r in mine)
        assert len({r["neutral_rate"] for r in mine}) == 1
    assert [r["trait"] for r in rows[:100]] == ["spanish"] * 100  # the undesired trait first
    # The measurement follows what the prompts say (groups of the candidate file): the prompts
    # written to ask for Spanish elicit it far more than the irrelevant ones. (The tiny test
    # model follows the Spanish prompts; the capital-letter ones hardly move it.)
    spanish_rate = {r["id"]: r["elicitation"] for r in rows if r["trait"] == "spanish"}
    group = lambda first, last: np.mean([spanish_rate[f"c{i:03d}"] for i in range(first, last + 1)])  # noqa: E731
    strong_spanish, irrelevant = (17, 36), (85, 100)
    assert group(*strong_spanish) > group(*irrelevant) + 0.3, spanish_rate
    # Measured both ways: the Spanish prompts make the (Spanish) training responses more likely.
    logprob = {r["id"]: r["logprob"] for r in rows if r["trait"] == "spanish"}
    assert all(r["logprob_low"] <= r["logprob"] <= r["logprob_high"] for r in rows)
    by_logprob = lambda first, last: np.mean([logprob[f"c{i:03d}"] for i in range(first, last + 1)])  # noqa: E731
    assert by_logprob(*strong_spanish) > by_logprob(*irrelevant) > -1, logprob
    assert " logprob" in next(line for line in lines if line.strip().startswith("rank"))

    # Spanish is predicted from the run's line; caps (desired) is not predicted.
    line = fit_rows(read_runs([run]), scale="raw").trait("spanish").line
    prompts = fit_rows(read_runs([run])).trait("spanish").prompts
    fitted = [p.elicitation.value for p in prompts if p.prompt_id != "none"]
    spanish = [r for r in rows if r["trait"] == "spanish"]
    x = np.array([r["elicitation"] for r in spanish])
    np.testing.assert_allclose([r["predicted_neutral"] for r in spanish], line.intercept.value + line.slope.value * x)
    low, high = line.band(x)
    np.testing.assert_allclose([r["predicted_low"] for r in spanish], low)
    np.testing.assert_allclose([r["predicted_high"] for r in spanish], high)
    assert [r["extrapolated"] for r in spanish] == list((x < min(fitted)) | (x > max(fitted)))
    assert all(r["predicted_neutral"] is None and r["extrapolated"] is None for r in rows if r["trait"] == "caps")


def test_a_logprob_only_screen_is_printed_ranked_by_it():
    """`--measure logprob` alone: no sampled rates to print, the candidates by L(s)."""
    from inocray.evaluation._logprob import Logprob
    from inocray.run._screen import _ranked
    from inocray.run import screen_text
    from inocray.settings import get_setting

    cands = [Candidate("weak", "You once visited Spain.", 1), Candidate("strong", "You always speak in Spanish.", 2)]
    logprobs = {"weak": Logprob(0.1, 0.0, 0.2, 16), "strong": Logprob(0.5, 0.4, 0.6, 16)}
    text = screen_text(_ranked(get_setting("toy"), cands, {}, {}, {}, logprobs))
    lines = text.splitlines()
    assert lines[0].endswith("ranked by logprob elicitation L(s) (nats per response token)")
    assert lines[1].split() == ["rank", "id", "logprob", "text"]
    assert lines[2].split()[:3] == ["1", "strong", "+0.500"] and lines[3].split()[:3] == ["2", "weak", "+0.100"]
