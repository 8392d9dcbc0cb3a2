"""`inocray search`: the scheduler's decisions, the objective and the confirming table, what a
stopped trial leaves, the steps counted, and bad input refused; the whole search on the toy
world in the slow tier (tests/test_search_run.py)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from conftest import result_row, tiny_sweep
from ray.tune.schedulers import TrialScheduler

from inocray.analysis import Objective, confirm
from inocray.cli import main
from inocray.results import PARTIAL_DIR, ROWS_DIR, STOPPED_DIR, has_rows, trial_rows, write_rows
from inocray.run._halving import Budget, Halving, StopTrials, rungs
from inocray.run._search import screened, spent_steps
from inocray.run._trial import FINISHED

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def fake_trial(trial_id: str) -> SimpleNamespace:
    """What the scheduler reads of a Tune trial: Tune's id and the config that names the plan's trial."""
    return SimpleNamespace(trial_id=f"tune-{trial_id}", config={"trial_id": trial_id})


def test_rungs_are_the_first_times_powers_of_eta_below_the_last_step():
    assert rungs(150, 16, 3) == [16, 48]  # not 144: the final model's report at 150 stands for it
    assert rungs(27, 3, 3) == [3, 9]  # 27 is the final model, not a checkpoint
    assert rungs(8, 4, 2) == [4]


def test_the_planted_best_survives_and_a_poor_candidate_stops_at_its_first_rung():
    """Planted learning curves (objective by rung): the scheduler sees them in Tune's asynchronous
    order, best-screened first, as the halving stage reports them."""
    curves = {"best": [0.5, 0.7, 0.9], "good": [0.4, 0.5, 0.6], "fair": [0.3, 0.35, 0.4],
              "poor": [0.0, 0.1, 0.2], "bad": [-0.2, -0.1, 0.0], "none-s0": [-0.5, -0.5, -0.5]}
    scheduler = Halving(total=27, first=3, eta=3, exempt={"none-s0"}, history=[])
    trials = {name: fake_trial(name) for name in curves}
    for t in trials.values():
        scheduler.on_trial_add(None, t)
    steps = [3, 9, 27]
    decisions: dict[str, list[str]] = {name: [] for name in curves}
    alive = set(curves)
    for rung, step in enumerate(steps):
        for name in curves:  # each live trial reports its rung, in screen order
            if name not in alive:
                continue
            result = {"step": step, "objective": curves[name][rung]}
            d = scheduler.on_trial_result(None, trials[name], result)
            decisions[name].append(d)
            if d == STOP:
                alive.discard(name)
    assert decisions["best"] == [CONTINUE] * 3  # the planted best reaches the final model
    assert decisions["bad"] == [STOP]  # stopped at its first rung
    assert decisions["poor"] == [STOP]
    assert decisions["none-s0"] == [CONTINUE] * 3  # the control, worst of all, is never stopped
    assert "best" in alive and "bad" not in alive


def test_a_resumed_scheduler_starts_from_the_recorded_rungs():
    """After a driver kill the stage runs again with a fresh scheduler: the rungs of the trials
    that finished or were stopped before must still decide, or a poor candidate reporting first
    would go on."""
    history = [("a", 3, 0.8), ("b", 3, 0.7), ("c", 3, 0.6)]
    fresh, resumed = (Halving(total=27, first=3, eta=3, exempt=set(), history=h) for h in ([], history))
    poor = fake_trial("poor")
    for s in (fresh, resumed):
        s.on_trial_add(None, poor)
    assert fresh.on_trial_result(None, poor, {"step": 3, "objective": 0.1}) == CONTINUE  # nothing to compare with
    assert resumed.on_trial_result(None, poor, {"step": 3, "objective": 0.1}) == STOP


def test_the_loss_reports_between_rungs_never_stop_a_trial():
    scheduler = Halving(total=27, first=3, eta=3, exempt=set(), history=[("a", 3, 0.9), ("b", 3, 0.8)])
    t = fake_trial("x")
    scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, t, {"step": 5, "loss": 3.0}) == CONTINUE  # no objective in it


def test_the_budget_stops_every_trial_once_the_steps_are_spent():
    budget = Budget(100, spent=40)
    assert not budget("a", {"step": 25}) and not budget.stop_all()
    budget("b", {"step": 20})
    budget("a", {"step": 30})  # the furthest step of each trial counts, not the sum of its reports
    assert not budget.stop_all()  # 40 + 30 + 20
    budget("b", {"step": 30})
    assert budget.stop_all()  # 40 + 30 + 30


def test_the_screen_orders_by_the_logprob_measure_where_it_was_taken_else_by_sampled_elicitation():
    def base(pid, rate, logprob=None, trait="spanish"):
        return result_row(trial_id="base", stage="base", step=0, prompt_id=pid, context="prompt", trait=trait,
                          rate=rate, logprob=logprob, prompt_role="inoculation")

    rows = [base("a", 0.9, 0.1), base("b", 0.2, 0.6), base("c", 0.5, 0.3), base("a", 0.0, 0.9, trait="caps"),
            result_row(trial_id="base", stage="base", step=0, prompt_id="none", context="neutral", rate=0.1)]
    objective = Objective("spanish")
    assert screened(rows, objective) == ["b", "c", "a"]
    assert screened([{**r, "logprob": None} for r in rows], objective) == ["a", "c", "b"]


def test_the_objective_is_suppression_against_the_reference_less_the_desired_trait_lost():
    objective = Objective("spanish", ("caps",), weight=0.5)
    control = {"spanish": 0.9, "caps": 0.8}
    assert objective.value({"spanish": 0.2, "caps": 0.8}, control) == pytest.approx(0.7)
    assert objective.value({"spanish": 0.2, "caps": 0.4}, control) == pytest.approx(0.7 - 0.5 * 0.4)
    assert objective.value({"spanish": 0.2, "caps": 0.95}, control) == pytest.approx(0.7)  # a gain is no penalty


def test_confirm_ranks_the_finalists_by_their_mean_over_seeds_with_a_t_interval():
    def rows(pid, seed, spanish, caps=0.8):
        return [result_row(trial_id=f"{pid}-s{seed}", prompt_id=pid, seed=seed, trait="spanish", rate=spanish,
                           prompt_role="none" if pid == "none" else "inoculation"),
                result_row(trial_id=f"{pid}-s{seed}", prompt_id=pid, seed=seed, trait="caps", desired=True, rate=caps,
                           prompt_role="none" if pid == "none" else "inoculation")]

    table = []
    for seed, (control, a, b) in enumerate([(0.9, 0.1, 0.3), (0.8, 0.2, 0.3), (0.9, 0.3, 0.5)]):
        table += rows("none", seed, control) + rows("a", seed, a) + rows("b", seed, b, caps=0.7)
    table += rows("b", 3, 0.0)  # a seed without its control: not counted
    got = confirm(table, Objective("spanish", ("caps",), 1.0), ["b", "a"])
    assert [f.prompt_id for f in got.finalists] == ["a", "b"]
    a_values = [0.8, 0.6, 0.6]  # control - prompt on each seed; caps kept
    assert got.winner.values == pytest.approx(a_values)
    half = 4.302653 * math.sqrt(sum((v - 2 / 3) ** 2 for v in a_values) / 2) / math.sqrt(3)  # t(0.975, 2)
    assert (got.winner.low, got.winner.high) == pytest.approx((2 / 3 - half, 2 / 3 + half), abs=1e-5)
    b_values = [0.6 - 0.1, 0.5 - 0.1, 0.4 - 0.1]  # caps 0.7 against the control's 0.8: 0.1 lost
    assert got.finalists[1].values == pytest.approx(b_values)
    assert got.difference[0] == pytest.approx(sum(a - b for a, b in zip(a_values, b_values)) / 3)
    assert got.seeds == (0, 1, 2)


class FakeQueue:
    def __init__(self):
        self.stopped = []
        self.stop = SimpleNamespace(remote=self.stopped.append)


def test_a_stopped_trials_rows_so_far_are_published_as_stopped_and_its_job_is_stopped(tmp_path):
    partial = [result_row(trial_id="c1-s0", stage="checkpoint", step=3, prompt_id="c1", prompt_role="inoculation")]
    write_rows(tmp_path, "c1-s0", partial, folder=PARTIAL_DIR)
    queue = FakeQueue()
    callback = StopTrials(tmp_path, queue, stoppable={"c1-s0", "c2-s0"})
    stopped = SimpleNamespace(config={"trial_id": "c1-s0"}, last_result={"step": 3, "objective": 0.1, "done": True})
    callback.on_trial_complete(0, [], stopped)
    assert queue.stopped == ["c1-s0"]
    assert [(r["trial_id"], r["stage"], r["step"]) for r in trial_rows(tmp_path, "c1-s0", STOPPED_DIR)] == [
        ("c1-s0", "checkpoint", 3)]
    assert not (tmp_path / PARTIAL_DIR / "c1-s0.parquet").exists()
    assert not has_rows(tmp_path, "c1-s0", "abc")  # never mistaken for a finished trial
    assert has_rows(tmp_path, "c1-s0", "abc", STOPPED_DIR)
    # A trial that finished (its last report says so) is left alone, as is one the search cannot stop.
    finished = SimpleNamespace(config={"trial_id": "c2-s0"}, last_result={"step": 8, FINISHED: 1, "done": True})
    control = SimpleNamespace(config={"trial_id": "none-s0"}, last_result={"step": 3})
    callback.on_trial_complete(0, [], finished)
    callback.on_trial_complete(0, [], control)
    assert queue.stopped == ["c1-s0"] and not (tmp_path / STOPPED_DIR / "c2-s0.parquet").exists()
    assert not (tmp_path / ROWS_DIR).exists()


def test_the_steps_spent_are_each_trials_furthest_step_from_its_log(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # As the training loop writes them (training._loop.TrialLog): time, trial, what.
    (logs / "a-s0.log").write_text("2026-12-07T08:38:51 a-s0 start step=0 total=27 pid=1\n"
                                   "2026-12-07T08:38:54 a-s0 end step=27 loss=0.1 peak_rss_mb=9\n")
    (logs / "b-s0.log").write_text("2026-12-07T08:38:51 b-s0 start step=0 total=27 pid=1\n"
                                   "2026-12-07T08:38:52 b-s0 stopped step=4 by the search's scheduler\n")
    (logs / "c-s0.log").write_text("2026-12-07T08:38:51 c-s0 start step=0 total=27 pid=1\n"
                                   "2026-12-07T08:38:52 c-s0 stopped step=4 by the search's scheduler\n"
                                   "2026-12-07T08:40:51 c-s0 resume step=3 total=27 pid=2\n"
                                   "2026-12-07T08:40:54 c-s0 end step=27 loss=0.1 peak_rss_mb=9\n")
    plan = SimpleNamespace(trials=[SimpleNamespace(id=i) for i in ("a-s0", "b-s0", "c-s0", "d-s0")],
                           spec=SimpleNamespace(train=SimpleNamespace(total_steps=lambda: 27)))
    spent = spent_steps(tmp_path, plan, 60.0)
    assert spent.trials == {"a-s0": 27, "b-s0": 4, "c-s0": 27}
    assert (spent.steps, spent.grid_steps) == (58, 4 * 27)


@pytest.fixture
def sweep_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep(train={"steps": 27})))
    (tmp_path / "c.txt").write_text("You often shout.\nYou like loud words.\n")
    return path


@pytest.mark.parametrize("args, message", [
    (["--candidates", "empty.txt"], "empty.txt: holds no candidate prompts"),
    (["--budget", "2"], "--budget 2 is below one rung (3 steps): no candidate could be compared"),
    (["--suppress", "color"], "--suppress 'color' is not a trait of toy; its undesired traits: spanish"),
    (["--suppress", "caps"], "--suppress 'caps' names a desired trait of toy; name one of spanish"),
    (["--first-rung", "10"], "--first-rung 10 leaves no rung before the end: it must be at least 1 and at most "
                             "the run's 27 steps / eta 3"),
    (["--eta", "1"], "--eta must be at least 2"),
    (["--candidates", "clash.txt"], "candidate id 'es-always' is already a prompt of the sweep or its setting"),
])
def test_bad_input_is_refused_in_one_sentence_with_nothing_written(sweep_file, args, message):
    (sweep_file.parent / "empty.txt").write_text("# nothing here\n")
    (sweep_file.parent / "clash.txt").write_text("- {id: es-always, text: You shout.}\n")
    (sweep_file.parent / "clash.txt").rename(sweep_file.parent / "clash.yaml")
    args = ["search", str(sweep_file), "--candidates", "c.txt", *args]
    args = [a.replace("clash.txt", "clash.yaml") for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith(f"error: {message}")
    assert not (sweep_file.parent / "runs").exists()


def test_the_report_of_a_search_names_its_winner_and_its_stopped_trials(tmp_path):
    from inocray.analysis._report import _search_html

    assert _search_html(tmp_path) == []  # not a search's run directory
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text("{}")
    write_rows(tmp_path, "c002-s0", [result_row(trial_id="c002-s0", stage="checkpoint", step=3)], folder=STOPPED_DIR)
    assert "The search has not ended yet" in "".join(_search_html(tmp_path))
    (tmp_path / "search" / "summary.json").write_text(json.dumps({
        "objective": "suppression of spanish", "winner": "c001", "difference_winner_runner_up": [0.1, -0.2, 0.4],
        "finalists": [{"prompt_id": "c001", "mean": 0.5, "low": 0.3, "high": 0.7, "values": [0.4, 0.5, 0.6]}],
        "steps": 500, "grid_steps": 1000, "share_of_grid": 0.5, "seconds": 120}))
    page = "".join(_search_html(tmp_path))
    assert "1 trial(s) stopped early at a rung (c002-s0)" in page and "Winner: <b>c001</b>" in page
    assert "500 steps, 50% of the full grid's 1000" in page


def test_while_the_control_trains_a_desired_trait_lost_is_counted_against_the_training_data(tmp_path):
    """The halving stage's reference is T*, the training data's levels: against the base model
    (which shows little of the caps the data teaches) no candidate would ever lose any caps."""
    from inocray.run._halving import data_levels
    from inocray.run._trial import Search

    write_rows(tmp_path, "data", [result_row(trial_id="data", stage="data", context="prompt", trait="spanish", rate=1.0),
                                  result_row(trial_id="data", stage="data", context="prompt", trait="caps", desired=True,
                                             rate=0.95)])
    search = Search(Objective("spanish", ("caps",), 1.0), data_levels(tmp_path))
    assert search.reference == {"spanish": 1.0, "caps": 0.95}
    keeps, loses = ({"neutral": {"spanish": (0.1, 8), "caps": (c, 8)}} for c in (0.9, 0.3))
    assert search.metrics(keeps)["objective"] == pytest.approx(0.9 - 0.05)
    assert search.metrics(loses)["objective"] == pytest.approx(0.9 - 0.65)
