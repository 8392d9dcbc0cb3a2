"""`inocray plan`: expected interval widths of a sweep's design, from simulation; bad input."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_sweep

from inocray.analysis.power import Design, plan_sweep
from inocray.analysis.simulate import PlantedTrait, simulate_rows, write_run
from inocray.cli import main

TOY = "sweeps/toy.yaml"  # 6 Spanish prompts + irr-helpful, 2 seeds, 32 x 4 samples
# The toy sweep's own base-model measurement (docs/toy-world.md)
MEASURED = {"es-hint": 0.07, "es-bilingual": 0.16, "es-sometimes": 0.22, "es-often": 0.55,
            "es-respond": 0.63, "es-always": 0.94, "irr-helpful": 0.0}  # fmt: skip
DESIGN = Design(MEASURED, base_neutral=0.0, data_level=1.0, seeds=2, n=128)


def plan(*args: str):
    # a wide target: the search for it stops at the first designs (each costs 10 simulations)
    return CliRunner().invoke(main, ["plan", TOY, "--sims", "10", "--target-width", "0.3", *args])


def test_more_seeds_and_samples_narrow_the_intervals():
    p = plan_sweep(DESIGN, k=0.9, noise=0.05, target_width=1.0, sims=20)
    by = {(w.seeds, w.n): w for w in p.rows}
    assert set(by) == {(2, 128), (3, 128), (4, 128), (6, 128), (2, 256), (2, 512)}
    assert by[6, 128].slope < by[3, 128].slope < by[2, 128].slope
    assert by[2, 512].k < by[2, 128].k
    # Mostly training noise: 6 seeds narrow the slope by about sqrt(3) (not all: the
    # elicitation's own sampling noise is not averaged by seeds)
    assert 1.3 < by[2, 128].slope / by[6, 128].slope < 1.9


def test_the_target_is_reached_by_the_fewest_seeds_or_samples_that_reach_it():
    p = plan_sweep(DESIGN, k=0.9, noise=0.05, target_width=0.2, sims=10)
    by_seeds, by_samples = p.reach["slope"]
    assert by_seeds.slope <= 0.2 and by_seeds.n == DESIGN.n and by_seeds.seeds > 2
    assert all(w.slope > 0.2 for w in p.rows if w.n == DESIGN.n and w.seeds < by_seeds.seeds)
    assert by_samples is None or (by_samples.slope <= 0.2 and by_samples.seeds == DESIGN.seeds)
    wide = plan_sweep(DESIGN, 0.9, 0.05, target_width=5.0, sims=10)
    assert [w.seeds for w in wide.reach["k"]] == [2, 2]
    assert "reached by the sweep as written" in wide.to_text()


def test_plan_prints_a_table_from_guessed_elicitation():
    result = plan()
    assert result.exit_code == 0, result.output
    assert "guessed" in result.output and "es-always" in result.output
    assert "<- the sweep as written" in result.output
    assert "target width 0.3 for the slope" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [r[:2] for r in rows] == [["2", "128"], ["3", "128"], ["4", "128"], ["6", "128"], ["2", "256"], ["2", "512"]]


def test_plan_is_seeded():
    assert plan("--seed", "3").output == plan("--seed", "3").output


def test_plan_reads_a_screen_by_prompt_text(tmp_path):
    from inocray.settings import get_setting

    catalogue = get_setting("toy", None).prompts
    rows = [{"id": f"c{i:03d}", "text": catalogue[pid].text, "trait": "spanish", "desired": False,
             "elicitation": x, "neutral_rate": 0.01} for i, (pid, x) in enumerate(MEASURED.items())]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "screen.parquet")
    result = plan("--from", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "trait spanish" in result.output and "es-always=0.94" in result.output
    assert "T(M0,C0) 0.01," in result.output  # measured, not guessed
    # a prompt of the sweep the screen did not measure: one sentence naming it
    pq.write_table(pa.Table.from_pylist(rows[1:]), tmp_path / "screen.parquet")
    result = plan("--from", str(tmp_path))
    assert result.exit_code == 2 and "es-hint" in result.output


def test_plan_reads_a_run_directory(tmp_path):
    trait = PlantedTrait("spanish", k=0.9, base_neutral=0.02, data_level=0.98, elicitation=MEASURED)
    run = write_run(simulate_rows([trait], dict.fromkeys(MEASURED, "inoculation"), seeds=2, n=400),
                    tmp_path / "run")  # fmt: skip
    result = plan("--from", str(run), "--elicitation", "es-hint=0.3")
    assert result.exit_code == 0, result.output
    assert "es-hint=0.30" in result.output and "(guessed)" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", "nowhere"], "does not exist"),
        (["--elicitation", "es-hint"], "is not ID=RATE"),
        (["--elicitation", "es-hint=1.5"], "is not ID=RATE"),
        (["--elicitation", "nope=0.5"], "not a prompt of the sweep"),
        (["--k", "1.9"], "outside [0, 1]"),
        (["--k", "3"], "--k"),
        (["--target-width", "0"], "--target-width"),
        (["--trait", "caps", "--from", "sweeps"], "neither a screen"),
    ],
    ids=["no-source", "no-rate", "rate-range", "unknown-prompt", "k-leaves-range", "k-range", "width",
         "not-a-screen"],  # fmt: skip
)
def test_bad_input_is_one_sentence_and_exit_2(args, message):
    result = plan(*args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ") and message in result.output


def test_a_sweep_needs_three_prompts_on_the_line(tmp_path):
    sweep = tmp_path / "two.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep(name="two", prompts=["es-hint", "es-always"])))
    result = CliRunner().invoke(main, ["plan", str(sweep), "--sims", "10"])
    assert result.exit_code == 2 and "a line needs 3" in result.output
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no such sweep file" in result.output
