"""What `inocray run` prints: for a desired trait, whether training kept it, not k."""

from __future__ import annotations

import pytest

from inocray.analysis import fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows

KEPT = PlantedTrait("caps", base_neutral=0.05, data_level=0.8, desired=True, neutral_at=lambda x: 0.8)
LOST = PlantedTrait("caps", k=1.0, base_neutral=0.05, data_level=0.9, desired=True, elicitation={"ip0": 0.85})


@pytest.mark.parametrize("planted, verdict", [(KEPT, "kept"), (LOST, "LOST")])
def test_a_desired_trait_prints_kept_or_lost_with_the_effects_interval(planted, verdict):
    fit = fit_rows(simulate_rows([planted], {"ip0": "inoculation"}, seeds=4, n=400, rng=0), n_boot=200)
    text = fit.to_text()
    assert "pooled k" not in text and "DISAGREE" not in text, text
    effect = next(p for p in fit.trait("caps").prompts if p.prompt_id == "ip0").inoculation_effect
    assert f"  {verdict:<8} ip0: neutral vs no-prompt control {effect:.2f}" in text.splitlines(), text


def test_ray_and_serve_lines_go_to_the_run_log_not_the_terminal(tmp_path, capfd):
    import logging

    import ray.serve  # noqa: F401 (Ray and Serve set up their loggers on import)

    from inocray.cli._quiet import libraries_to

    log = tmp_path / "run" / "logs" / "ray.log"  # the run directory does not exist yet
    ray_handlers = logging.getLogger("ray").handlers[:]
    with libraries_to(log):
        logging.getLogger("ray._private.worker").warning("token authentication is off")
        logging.getLogger("ray.serve").info("Started Serve in namespace 'serve'.")
    out, err = capfd.readouterr()
    assert out + err == ""
    text = log.read_text()
    assert "WARNING ray._private.worker: token authentication is off" in text
    assert "INFO ray.serve: Started Serve in namespace 'serve'." in text
    assert logging.getLogger("ray").handlers == ray_handlers  # -v, or after the run: as Ray set them


SEEN: list = []  # the handlers Serve's logger had while the command worked


def _noisy(echo, returns=None):
    """What a command's work does on the driver: Serve's start-up lines, and a line of its own."""
    import logging

    SEEN[:] = logging.getLogger("ray.serve").handlers
    logging.getLogger("ray.serve").info("Started Serve in namespace 'serve'.")
    logging.getLogger("ray.serve").info("Connecting to existing Serve app in namespace 'serve'.")
    echo("inocray's own line")
    return returns


@pytest.mark.parametrize("name", ["run", "make-data", "screen"])
@pytest.mark.parametrize("verbose", [False, True])
def test_commands_that_start_ray_keep_its_lines_off_the_terminal_unless_verbose(name, verbose, tmp_path, monkeypatch,
                                                                               capfd):
    """run, make-data and screen, their work stood in for by Serve's lines and one of their own."""
    import yaml
    from click.testing import CliRunner
    from conftest import tiny_sweep

    import inocray.run
    from inocray.cli import main

    import logging

    import ray.serve  # noqa: F401 (Serve sets up its logger on import)

    serves = logging.getLogger("ray.serve").handlers[:]
    sweep, requests, prompts = tmp_path / "sweep.yaml", tmp_path / "requests.jsonl", tmp_path / "prompts.txt"
    sweep.write_text(yaml.safe_dump(tiny_sweep()))
    requests.write_text('{"request": "Hi"}\n')
    prompts.write_text("You always speak in Spanish.\n")
    monkeypatch.setattr(inocray.run, "run_sweep", lambda spec, run_dir, echo, **kw: _noisy(echo, run_dir))
    monkeypatch.setattr(inocray.run, "summarize", lambda *a, **kw: None)
    monkeypatch.setattr(inocray.run, "make_data", lambda *a, echo, **kw: _noisy(echo))
    monkeypatch.setattr(inocray.run, "screen", lambda *a, echo, **kw: _noisy(echo, "table"))
    monkeypatch.setattr(inocray.run, "screen_text", lambda table, top: "")
    monkeypatch.setattr(inocray.run, "save_screen", lambda table, out: [])
    argv, log = {
        "run": (["--run-dir", str(tmp_path / "run")], tmp_path / "run" / "logs" / "ray.log"),
        "make-data": (["--requests", str(requests), "--out", str(tmp_path / "data" / "train.jsonl"),
                       "--instruction", "Speak Spanish.", "--keep", "spanish"], tmp_path / "data" / "train.ray.log"),
        "screen": (["--prompts", str(prompts), "--out", str(tmp_path / "screen")], tmp_path / "screen" / "ray.log"),
    }[name]
    capfd.readouterr()

    result = CliRunner().invoke(main, [name, str(sweep), *argv, *(["-v"] if verbose else [])])

    assert result.exit_code == 0, result.output
    out, err = capfd.readouterr()
    assert "inocray's own line" in result.output
    if verbose:  # Serve's lines where Serve puts them (its own handlers), and no file
        assert SEEN == serves and not log.exists() and "Ray's and Serve's log" not in result.output
    else:
        assert "Serve" not in out + err + result.output.replace(f"Ray's and Serve's log: {log}", "")
        assert f"Ray's and Serve's log: {log}" in result.output.splitlines()
        assert "INFO ray.serve: Connecting to existing Serve app in namespace 'serve'." in log.read_text()
    assert logging.getLogger("ray.serve").handlers == serves  # as Serve set them, once the command is done
