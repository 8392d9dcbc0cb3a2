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
