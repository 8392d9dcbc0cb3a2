"""Hostile and malformed input: each bad input is one sentence on one line, exit code 2,
no traceback, nothing written, and no Ray started.

One table, four kinds of input: sweep files (with test_spec.py's table of bad sweeps run
through `inocray run` into its default run directory), candidate files for `inocray screen`,
command-line arguments, and run directories. Every case is the real CLI under click's
CliRunner, run in its own tmp_path as the working directory, so that a run directory created
by mistake (runs/NAME-HASH) shows up in the before/after listing.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import BAD_SWEEPS, GOOD_SWEEP

from inocray.results import _layout as rundir
from inocray.results import _rows as store
from inocray.cli import main

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 500  # an error names a file and a field; it never echoes a huge value back

Build = Callable[[Path], list]  # writes the inputs under tmp_path; returns the CLI arguments


# --- sweep files -------------------------------------------------------------------------


def sweep(text: str | bytes, command: str = "run") -> Build:
    """`inocray run SWEEP` (default run directory, under the working directory) on a file."""

    def build(tmp: Path) -> list:
        f = tmp / "sweep.yaml"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [command, f]

    return build


def with_train(extra: str) -> str:
    return GOOD_SWEEP.replace("steps: 10", f"steps: 10, {extra}")


def anchors_bomb(depth: int) -> str:
    """Billion laughs: 9**depth leaves from a few hundred bytes of aliases, echoed back by `name`."""
    levels = "abcdefghij"[:depth]
    defs = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    defs += [f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip(levels, levels[1:])]
    return (f"setting: toy\nprompts: [es-always]\ntrain: {{lora: {{target_modules: [{', '.join(defs)}]}}}}\n"
            f"name: *{levels[-1]}\n")


def a_directory(tmp: Path) -> list:
    (tmp / "sweep.yaml").mkdir()
    return ["run", tmp / "sweep.yaml"]


def model_is_a_file(tmp: Path) -> list:
    (tmp / "weights.bin").write_bytes(b"\0" * 16)
    return sweep(GOOD_SWEEP + f"model: {tmp / 'weights.bin'}\n")(tmp)


def data_eval_is_a_directory(tmp: Path) -> list:
    (tmp / "evaldata").mkdir()
    return sweep(GOOD_SWEEP + f"data: {{eval: {tmp / 'evaldata'}}}\n")(tmp)


SWEEP_CASES = {
    "steps 10**12": (sweep(GOOD_SWEEP.replace("steps: 10", "steps: 1000000000000")), "above the limit"),
    "lr as words": (sweep(GOOD_SWEEP.replace("lr: 1e-3", "lr: fast")), "field 'train.lr' must be a number"),
    "lr NaN": (sweep(GOOD_SWEEP.replace("lr: 1e-3", "lr: .nan")), "field 'train.lr' must be a finite number"),
    "lr 1e400 (infinite)": (sweep(GOOD_SWEEP.replace("lr: 1e-3", "lr: 1.0e400")), "must be a finite number"),
    "steps true": (sweep(GOOD_SWEEP.replace("steps: 10", "steps: yes")), "field 'train.steps' must be an integer"),
    "seeds a mapping": (sweep(GOOD_SWEEP.replace("[0, 1]", "{a: 1}")), "field 'seeds' must be a list"),
    "prompts a string": (sweep(GOOD_SWEEP.replace("[es-always]", "es-always")), "field 'prompts' must be a list"),
    "negative seed": (sweep(GOOD_SWEEP.replace("[0, 1]", "[0, -1]")), "field 'seeds'"),
    "zero concurrent trials": (sweep(GOOD_SWEEP + "max_concurrent_trials: 0\n"), "field 'max_concurrent_trials'"),
    "unknown irrelevant prompt": (sweep(GOOD_SWEEP.replace("[irr-helpful]", "[irr-nope]")), "field 'irrelevant[0]'"),
    "python/name tag": (sweep(GOOD_SWEEP.replace("[es-always]", "!!python/name:os.system")), "not valid YAML"),
    "python/object/new tag": (sweep(GOOD_SWEEP + "model: !!python/object/new:builtins.exec ['1']\n"), "not valid YAML"),
    "binary file": (sweep(bytes(range(256)) * 64), "not a text file"),
    "NUL byte in text": (sweep(GOOD_SWEEP + "model: to\0y\n"), "not valid YAML"),
    "empty file": (sweep(""), "must be a mapping"),
    "only a comment": (sweep("# nothing here\n"), "must be a mapping"),
    "a scalar": (sweep("hello\n"), "must be a mapping"),
    "a directory": (a_directory, "is a directory"),
    "missing file": (lambda tmp: ["run", tmp / "nope.yaml"], "no such sweep file"),
    "model is a file": (model_is_a_file, "field 'model'"),
    "custom prompt id ../x": (sweep(GOOD_SWEEP + "custom_prompts: {'../x': [Speak Spanish.]}\n"), "custom_prompts"),
    "custom prompt id none": (sweep(GOOD_SWEEP + "custom_prompts: {none: [Speak Spanish.]}\n"), "not 'none'"),
    "custom prompt no text": (sweep(GOOD_SWEEP + "custom_prompts: {mine: []}\n"), "custom_prompts.mine"),
    "custom prompt id a number": (sweep(GOOD_SWEEP + "custom_prompts: {1: [x]}\n"), "must be a string"),
    "judge model missing": (sweep(GOOD_SWEEP + "eval: {judge_model: /no/such/judge}\n"), "field 'eval.judge_model'"),
    "data.train missing file": (sweep(GOOD_SWEEP + "data: {train: /no/such.jsonl}\n"), "field 'data.train'"),
    "data.eval a directory": (data_eval_is_a_directory, "field 'data.eval'"),
    "validate: python tag": (sweep(GOOD_SWEEP + "x: !!python/object/apply:os.system ['true']\n", "validate"),
                             "not valid YAML"),
    # Each of these fails before `inocray run` creates anything, but not in one short sentence.
    "50 MB string": (sweep(GOOD_SWEEP + "placement: " + "x" * 50_000_000 + "\n"), "sweep.yaml: "),
    "anchors bomb (billion laughs)": (sweep(anchors_bomb(6)), "field 'name' must be a string"),
    "steps with 5000 digits": (sweep(GOOD_SWEEP.replace("steps: 10", "steps: " + "9" * 5000)), "not valid YAML"),
    "YAML nested 5000 deep": (sweep(GOOD_SWEEP + "x: " + "[" * 5000 + "]" * 5000 + "\n"), "YAML"),
    "model path too long for the OS": (sweep(GOOD_SWEEP + "model: /" + "m" * 5000 + "\n"), "field 'model'"),
    "model path with a NUL byte": (sweep(GOOD_SWEEP + 'model: "/no/such\\0model"\n'), "field 'model'"),
    "epochs 1e308": (sweep(with_train("epochs: 1.0e308")), "field 'train.epochs'"),
    "grid of 10201 cells": (sweep(GOOD_SWEEP + "grid: {train.lr: [" + ", ".join(f"{i}e-6" for i in range(1, 102))
                                  + "], train.steps: [" + ", ".join(map(str, range(1, 102))) + "]}\n"),
                            "field 'grid' makes 10201 cells, and a sweep may have at most 10000"),
}


# --- candidate files for `inocray screen` --------------------------------------------------


def candidates(content: str | bytes | None, name: str = "c.txt", *extra: str) -> Build:
    """`inocray screen SWEEP --prompts FILE --out OUT` with a good sweep; None: FILE is a directory."""

    def build(tmp: Path) -> list:
        (tmp / "sweep.yaml").write_text(GOOD_SWEEP)
        f = tmp / name
        if content is None:
            f.mkdir()
        else:
            f.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["screen", tmp / "sweep.yaml", "--prompts", f, "--out", tmp / "out", *extra]

    return build


CANDIDATE_CASES = {
    "candidates: empty file": (candidates(""), "holds no candidate prompts"),
    "candidates: only comments": (candidates("# one\n\n# two\n"), "holds no candidate prompts"),
    "candidates: binary": (candidates(b"\x89PNG\r\n\x1a\n\xff\xfe" * 100), "is not UTF-8 text"),
    "candidates: control characters": (candidates("Speak Spanish.\nSpeak\x07 loudly.\n"), "control characters"),
    "candidates: a directory": (candidates(None), "is a directory"),
    "candidates: missing file": (lambda tmp: candidates("x")(tmp)[:3] + [tmp / "nope.txt"], "no such candidate file"),
    "candidates: repeated prompt": (candidates("Speak Spanish.\nSpeak Spanish.\n"), "repeats the prompt of line 1"),
    "candidates: YAML not a list": (candidates("id: a\ntext: b\n", "c.yaml"), "must start a list"),
    "candidates: YAML python tag": (candidates("- !!python/object/apply:os.system ['true']\n", "c.yaml"),
                                    "not valid YAML"),
    "candidates: YAML id ../x": (candidates("- {id: ../x, text: Speak Spanish.}\n", "c.yaml"), "has id '../x'"),
    "candidates: YAML id is an anchors bomb": (
        candidates("- {id: a, text: &a [lol, lol, lol]}\n"
                   + "".join(f"- {{id: {c}, text: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]}}\n"
                             for p, c in zip("abcdef", "bcdefg"))
                   + "- {id: *g, text: x}\n", "c.yaml"),
        "has no prompt text"),
    "candidates: YAML number with 5000 digits": (candidates(f"- {{id: {'9' * 5000}, text: x}}\n", "c.yaml"),
                                                 "too many digits"),
    "candidates: JSONL bad line": (candidates('{"id": "a", "text": "x"}\n{"id": "b",\n', "c.jsonl"),
                                   "line 2 is not valid JSON"),
    "candidates: JSONL extra key": (candidates('{"id": "a", "text": "x", "run": "rm -rf /"}\n', "c.jsonl"),
                                    "exactly the keys id and text"),
    "candidates: JSONL repeated id": (candidates('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "c.jsonl"),
                                      "repeats the id 'a'"),
    "candidates: JSONL nested 100000 deep": (candidates("[" * 100_000 + "\n", "c.jsonl"), "nested too deeply"),
    "candidates: JSONL number with 5000 digits": (candidates('{"id": ' + "9" * 5000 + ', "text": "x"}\n', "c.jsonl"),
                                                  "too many digits"),
}


# --- command-line arguments ----------------------------------------------------------------


def good_sweep(tmp: Path) -> Path:
    f = tmp / "sweep.yaml"
    f.write_text(GOOD_SWEEP)
    return f


def run_args(*extra: str) -> Build:
    return lambda tmp: ["run", good_sweep(tmp), *extra]


def run_dir_is_a_file(tmp: Path) -> list:
    (tmp / "taken").write_text("not a directory")
    return ["run", good_sweep(tmp), "--run-dir", tmp / "taken"]


def empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


ARGUMENT_CASES = {
    "args: unknown option": (run_args("--stepz", "3"), "no such option --stepz"),
    "args: unknown command": (lambda tmp: ["frobnicate"], "no such command 'frobnicate'"),
    "args: run without a sweep file": (lambda tmp: ["run"], "give a sweep file, or --resume RUN_DIR"),
    "args: run --resume a directory that is no run": (lambda tmp: ["run", "--resume", empty_dir(tmp)],
                                                      "is not a sweep record"),
    "args: --run-dir is a file": (run_dir_is_a_file, "is a file"),
    "args: analyze --n-boot 0": (lambda tmp: ["analyze", empty_dir(tmp), "--n-boot", "0"], "'--n-boot'"),
    "args: report --n-boot -5": (lambda tmp: ["report", empty_dir(tmp), "--n-boot", "-5"], "'--n-boot'"),
    "args: analyze --seed -1": (lambda tmp: ["analyze", empty_dir(tmp), "--seed", "-1"], "'--seed'"),
    "args: report --seed -1": (lambda tmp: ["report", empty_dir(tmp), "--seed", "-1"], "'--seed'"),
    "args: plan --seed -1": (lambda tmp: ["plan", good_sweep(tmp), "--seed", "-1"], "'--seed'"),
    "args: analyze --seed 2**32": (lambda tmp: ["analyze", empty_dir(tmp), "--seed", str(2**32)], "'--seed'"),
    "args: analyze --n-boot 10**12": (lambda tmp: ["analyze", empty_dir(tmp), "--n-boot", "1000000000000"],
                                      "100<=x<=100000"),
    "args: report --n-boot 10**12": (lambda tmp: ["report", empty_dir(tmp), "--n-boot", "1000000000000"],
                                     "100<=x<=100000"),
    "args: plan --sims 10**9": (lambda tmp: ["plan", good_sweep(tmp), "--sims", "1000000000"], "10<=x<=10000"),
    "args: analyze --scale typo": (lambda tmp: ["analyze", empty_dir(tmp), "--scale", "logits"], "'--scale'"),
    "args: screen --top 0": (candidates("Speak Spanish.\n", "c.txt", "--top", "0"), "'--top'"),
    "args: screen --batch -1": (candidates("Speak Spanish.\n", "c.txt", "--batch", "-1"), "'--batch'"),
    "args: screen --out is a file": (lambda tmp: candidates("Speak Spanish.\n")(tmp)[:4] + ["--out", good_sweep(tmp)],
                                     "is a file"),
    "args: stop --wait -1": (lambda tmp: ["stop", "job", "--address", "http://127.0.0.1:1", "--wait", "-1"],
                             "'--wait'"),
    "args: status of a non-run directory": (lambda tmp: ["status", empty_dir(tmp)], "is not a run directory"),
    "args: status of a job without --address": (lambda tmp: ["status", "no-such-thing"], "is not a run directory"),
    "args: analyze an empty directory": (lambda tmp: ["analyze", empty_dir(tmp)], "holds no result rows"),
    "args: analyze a missing directory": (lambda tmp: ["analyze", tmp / "nope"], "does not exist"),
    "args: analyze a file": (lambda tmp: ["analyze", good_sweep(tmp)], "is not a directory"),
    "args: analyze one directory twice": (lambda tmp: ["analyze", empty_dir(tmp), tmp / "empty"], "given twice"),
    "args: report an empty directory": (lambda tmp: ["report", empty_dir(tmp)], "holds no result rows"),
    "args: submit a relative --run-dir": (lambda tmp: ["submit", good_sweep(tmp), "--address", "http://127.0.0.1:1",
                                                       "--run-dir", "runs/x"], "must be an absolute path"),
    "args: submit a malformed s3 --run-dir": (lambda tmp: ["submit", good_sweep(tmp), "--address", "http://127.0.0.1:1",
                                                           "--run-dir", "s3://Bad_Bucket/../x"], "is not a well-formed"),
    "args: submit to a non-URL address": (lambda tmp: ["submit", good_sweep(tmp), "--address", "ftp://head",
                                                       "--run-dir", "/mnt/shared/runs/x"], "not the dashboard's URL"),
    "args: logs with a port that is not a number": (lambda tmp: ["logs", "job", "--address", "http://head:port"],
                                                    "is not the dashboard's URL"),
}


# --- run directories -------------------------------------------------------------------------


def row(**fields) -> dict:
    """One result row of store.SCHEMA (base-model elicitation of 'spanish' unless told)."""
    r = dict(sweep_hash="0123456789", setting="toy", trial_id="base", stage="base", prompt_id="none",
             prompt_text="", prompt_role="none", seed=0, step=0, context="neutral", trait="spanish",
             desired=False, rate=0.5, n=8)
    r.update(fields)
    return {name: r.get(name) for name in store.SCHEMA.names}


def run_dir(tmp: Path, sweep_json: str | None = None, rows: dict | None = None) -> Path:
    """A run directory of GOOD_SWEEP: sweep.json as `inocray run` writes it, and rows/<trial>.parquet."""
    from inocray.config import load_sweep

    d = tmp / "run"
    (d / rundir.ROWS_DIR).mkdir(parents=True)
    own = None
    if sweep_json is None:
        spec = load_sweep(good_sweep(tmp))
        own, sweep_json = spec.hash(), json.dumps({"hash": spec.hash(), "spec": spec.record()})
    (d / "sweep.json").write_text(sweep_json)
    for trial, table in (rows or {}).items():
        if own and table.schema.field("sweep_hash").type == pa.string():  # rows of this sweep
            table = table.set_column(table.schema.get_field_index("sweep_hash"), "sweep_hash",
                                     pa.array([own] * table.num_rows, pa.string()))
        pq.write_table(table, d / rundir.ROWS_DIR / f"{trial}.parquet")
    return d


def good_rows(**fields) -> pa.Table:
    return pa.Table.from_pylist([row(**fields)], schema=store.SCHEMA)


def truncated_run_dir(tmp: Path) -> Path:
    """A run directory whose rows/base.parquet lost its second half (a copy cut short)."""
    d = run_dir(tmp, rows={"base": good_rows()})
    f = d / rundir.ROWS_DIR / "base.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return d


def truncated(command: str) -> Build:
    return lambda tmp: [command, truncated_run_dir(tmp)]


def wrong_types(command: str) -> Build:
    def build(tmp: Path) -> list:
        table = pa.Table.from_pylist([{**row(), "rate": "half", "n": "eight"}])  # strings, not numbers
        return [command, run_dir(tmp, rows={"base": table})]

    return build


def rundir_case(command: str, sweep_json: str | None = None, **rows: pa.Table) -> Build:
    return lambda tmp: [command, run_dir(tmp, sweep_json, rows)]


def run_into_another_sweeps_dir(tmp: Path) -> list:
    d = run_dir(tmp)
    (tmp / "other.yaml").write_text(GOOD_SWEEP.replace("steps: 10", "steps: 11"))
    return ["run", tmp / "other.yaml", "--run-dir", d]


def run_into_a_corrupt_run_dir(tmp: Path) -> list:
    return ["run", good_sweep(tmp), "--run-dir", run_dir(tmp, sweep_json="{not json")]


def screen_from(sweep_json: str | None, **rows: pa.Table) -> Build:
    def build(tmp: Path) -> list:
        d = run_dir(tmp, sweep_json, rows)
        return candidates("Speak Spanish.\n")(tmp) + ["--from", d]

    return build


RUN_DIR_CASES = {
    "rundir: analyze a truncated Parquet file": (truncated("analyze"), "base.parquet is not a readable Parquet"),
    "rundir: status with a truncated Parquet file": (truncated("status"), "base.parquet is not a readable Parquet"),
    "rundir: report with a truncated Parquet file": (truncated("report"), "base.parquet is not a readable Parquet"),
    "rundir: analyze Parquet of wrong column types": (wrong_types("analyze"), "base.parquet is not a readable"),
    "rundir: status with Parquet of wrong column types": (wrong_types("status"), "base.parquet is not a readable"),
    "rundir: analyze rows of an unknown stage": (rundir_case("analyze", base=good_rows(stage="pretrained")),
                                                 "unknown stage 'pretrained'"),
    "rundir: analyze rows with a column missing": (
        rundir_case("analyze", base=pa.Table.from_pylist([row()]).drop_columns(["rate"])), "no value for rate"),
    "rundir: status with sweep.json not JSON": (rundir_case("status", "{not json"), "is not a sweep record"),
    "rundir: status with sweep.json a list": (rundir_case("status", "[1, 2]"), "is not a sweep record"),
    "rundir: status with sweep.json of a bad field": (
        rundir_case("status", json.dumps({"hash": "x", "spec": {"name": "t", "setting": "nope", "prompts": []}})),
        "field 'prompts'"),
    "rundir: run into the run directory of another sweep": (run_into_another_sweeps_dir, "not this sweep"),
    "rundir: screen --from a truncated Parquet file": (
        lambda tmp: candidates("Speak Spanish.\n")(tmp) + ["--from", truncated_run_dir(tmp)],
        "base.parquet is not a readable Parquet"),
    "rundir: screen --from an empty run": (screen_from(None), "holds no result rows"),
    "rundir: run into a run directory whose sweep.json is not JSON": (
        run_into_a_corrupt_run_dir, "is not a sweep record"),
    "rundir: screen --from a run whose sweep.json is not JSON": (
        screen_from("{not json", base=good_rows()), "is not a sweep record"),
}


def _table() -> list:
    params = []
    spec_cases = {f"test_spec: {name}": (sweep(text), expected) for name, (text, expected) in BAD_SWEEPS.items()}
    for table in (spec_cases, SWEEP_CASES, CANDIDATE_CASES, ARGUMENT_CASES, RUN_DIR_CASES):
        for name, (build, expected) in table.items():
            params.append(pytest.param(build, expected, id=name))
    return params


CASES = _table()


@pytest.mark.parametrize("build, expected", CASES)
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, monkeypatch, build, expected):
    monkeypatch.chdir(tmp_path)  # `inocray run` without --run-dir would create runs/NAME-HASH here
    args = [str(a) for a in build(tmp_path)]
    before = _listing(tmp_path)
    ray_was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()  # other tests' session
    monkeypatch.setattr("inocray.evaluation.serve.session", _no_session)  # sweeps and screens start Ray there

    result = CliRunner().invoke(main, args)

    assert isinstance(result.exception, SystemExit), result.exc_info  # not a traceback
    assert result.exit_code == 2, result.output
    assert result.stdout == "", result.output  # nothing printed before the error
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output[:2000]
    message = lines[0]
    assert len(message) <= MAX_LINE, message[:MAX_LINE] + "..."
    assert expected in message, message
    assert "Traceback" not in message and not re.search(r"[.!?] [A-Z][a-z]", _unquoted(message)), message
    assert _listing(tmp_path) == before, "a failed command left files behind or changed them"
    assert ray_was_up or not ("ray" in sys.modules and sys.modules["ray"].is_initialized()), "Ray started"


def _no_session(*args, **kwargs):
    raise AssertionError("the command got as far as starting Ray and the engine")


def test_run_never_creates_its_run_directory_when_validation_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    for text in (GOOD_SWEEP.replace("lr: 1e-3", "lr: -1"), GOOD_SWEEP + "placement: sytem\n", GOOD_SWEEP + "model: /no/such/model\n"):
        bad.write_text(text)
        for extra in ([], ["--run-dir", str(tmp_path / "run")], ["--run-dir", str(tmp_path / "deep" / "er" / "run")]):
            result = CliRunner().invoke(main, ["run", str(bad), *extra])
            assert result.exit_code == 2, result.output
            assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], (text, extra)


def test_yaml_is_loaded_safely_everywhere():
    """Only yaml.safe_load, yaml.safe_dump and the SafeLoader in code (string literals, such as
    a setting's examples of unsafe code, do not count): no tag in a file can run code."""
    allowed = {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "compose", "YAMLError",
               "SafeLoader", "CSafeLoader", "SafeDumper", "CSafeDumper"}
    sources = [p for p in ROOT.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    assert any(p.name == "_spec.py" for p in sources)
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                assert node.attr in allowed, f"{path}:{node.lineno}: yaml.{node.attr}"
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "yaml", f"{path}:{node.lineno}: from yaml import ..."
            elif isinstance(node, ast.keyword) and node.arg == "Loader":
                loader = ast.unparse(node.value)
                assert loader.split(".")[-1] in ("SafeLoader", "CSafeLoader"), f"{path}: Loader={loader}"


def _listing(root: Path) -> dict:
    """Every path under root with its kind, size and modification time."""
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def _unquoted(message: str) -> str:
    """The message without its quoted parts and paths, where a '. X' is not a sentence break."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\S*/\S*", "", message)


def test_validate_lists_a_grid_s_cells_in_one_pass_over_its_trials(tmp_path, monkeypatch):
    """The largest grid validates, and each cell's trials are counted in one pass: a scan of
    every trial per cell (Plan.cell_trials) made validate take minutes on 10,000 cells."""
    from inocray.config import Plan

    scans = []
    monkeypatch.setattr(Plan, "cell_trials", lambda self, cell: scans.append(cell) or [])
    f = tmp_path / "grid.yaml"
    f.write_text(GOOD_SWEEP.replace("irrelevant: [irr-helpful]\n", "").replace("seeds: [0, 1]", "seeds: [0]")
                 + "grid: {train.lr: [" + ", ".join(f"{i}e-6" for i in range(1, 101)) + "], train.steps: ["
                 + ", ".join(map(str, range(1, 101))) + "]}\n")
    result = CliRunner().invoke(main, ["validate", str(f), "--no-model-check"])
    assert result.exit_code == 0, result.output
    assert "= 10000 cells, 20000 trials" in result.output and result.output.count(": 2 trials") == 10_000
    assert scans == []
