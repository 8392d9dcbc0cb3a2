"""Long-lived training workers: the queue that feeds them, and a trial that sees nothing of the
trial before it on the same worker group."""

import asyncio
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from inocray.training import _workers as workers
from inocray.settings import get_setting
from inocray.config import TrainSpec, training_worker
from conftest import fine_tune

from inocray.training import TrainJob, build_model
from inocray.training._workers import IDLE, JobQueue, Pool


def job(name: str, max_failures: int = 1, **fields) -> TrainJob:
    base = TrainJob(trial_id=name, examples=[], base_model="", adapter_dir="", prompt_texts=(), placement="system",
                    seed=0, train=TrainSpec(), max_failures=max_failures)
    return replace(base, **fields)


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_job_goes_to_a_free_slot_and_its_reports_reach_the_waiting_trial():
    async def scenario():
        queue = JobQueue(slots=2)
        assert await queue.attach(0)
        assert await queue.next(0, timeout=0.01) == IDLE  # nothing submitted yet
        ticket = await queue.submit(job("a"))
        waiting = asyncio.create_task(queue.wait(ticket, 0, timeout=5))
        assert await queue.next(0, timeout=1) == (ticket, job("a"))
        await queue.report(ticket, {"loss": 1.5, "step": 25})
        assert await waiting == ([{"loss": 1.5, "step": 25}], False, "", False)
        await queue.done(0)
        assert await queue.wait(ticket, 1, timeout=5) == ([], True, "", False)
        await queue.close()
        assert await queue.next(0, timeout=1) is None  # closed and nothing waits: the loop ends

    run(scenario())


def test_a_rebuilt_group_gets_its_job_in_flight_again_until_its_retries_are_spent():
    async def scenario():
        queue = JobQueue(slots=1)
        await queue.attach(0)
        first, second = await queue.submit(job("a", max_failures=1)), await queue.submit(job("b"))
        assert (await queue.next(0, timeout=1))[0] == first
        await queue.error(first, "rank 1: RuntimeError: boom")
        assert await queue.attach(0)  # the group was rebuilt: one retry of "a"
        assert (await queue.next(0, timeout=1))[0] == first
        assert await queue.attach(0)  # rebuilt again: "a" has failed twice, more than max_failures
        assert await queue.wait(first, 0, timeout=1) == (
            [], False, "the training worker group failed 2 times; last error: rank 1: RuntimeError: boom", False)
        assert (await queue.next(0, timeout=1))[0] == second  # the slot goes on with the next job

    run(scenario())


def test_a_stopped_trials_job_ends_its_slots_work_and_the_slot_takes_the_next_job():
    async def scenario():
        queue = JobQueue(slots=1)
        await queue.attach(0)
        running, waiting, other = [await queue.submit(job(name)) for name in ("a", "b", "c")]
        assert (await queue.next(0, timeout=1))[0] == running
        assert not await queue.stopping(running)
        await queue.stop("a")
        await queue.stop("b")  # stopped before it started: it never starts
        assert await queue.stopping(running)  # the worker loop asks this before every step
        assert (await queue.wait(running, 0, timeout=1))[3] and (await queue.wait(waiting, 0, timeout=1))[1:] == (
            True, "", True)
        await queue.done(0)  # the loop ended the stopped job
        assert (await queue.next(0, timeout=1))[0] == other  # the freed slot takes the next job, not "b"
        assert not await queue.stopping(other)

    run(scenario())


def test_a_job_held_at_its_snapshot_trains_on_only_after_its_trial_judged_it_or_stops_there():
    async def scenario():
        queue = JobQueue(slots=2)
        await queue.attach(0)
        await queue.attach(1)
        go_on, stop = await queue.submit(job("a")), await queue.submit(job("b"))
        await queue.next(0, timeout=1)
        await queue.next(1, timeout=1)
        assert not await queue.stopping(go_on, held=0)  # no snapshot yet: nothing to wait for
        for ticket in (go_on, stop):
            await queue.report(ticket, {"snapshot": 6, "path": "/ckpt/step-6"})
        asked = [asyncio.create_task(queue.stopping(t, held=6, timeout=5)) for t in (go_on, stop)]
        await asyncio.sleep(0.2)
        assert not any(a.done() for a in asked)  # both wait at step 6 while their trials evaluate it
        await queue.judged(go_on, 6)  # "a"'s trial reported, and its scheduler let it go on
        await queue.stop("b")  # "b"'s scheduler stopped it at this rung
        assert await asyncio.wait_for(asyncio.gather(*asked), 1) == [False, True]
        assert not await queue.stopping(go_on, held=6)  # judged once is enough for every later step

    run(scenario())


def test_a_slot_that_keeps_failing_without_a_job_ends_and_the_last_slot_fails_the_waiting_jobs():
    async def scenario():
        queue = JobQueue(slots=1)
        assert all([await queue.attach(0) for _ in range(workers.GIVE_UP + 1)])
        assert not await queue.attach(0)
        ticket = await queue.submit(job("a"))
        await queue.slot_ended(0, "RuntimeError: no process group")
        assert (await queue.wait(ticket, 0, timeout=1))[2] == (
            "every training worker group ended: RuntimeError: no process group")
        assert (await queue.wait(await queue.submit(job("b")), 0, timeout=1))[2] == "no training worker group is running"

    run(scenario())


def test_each_trial_gets_a_fresh_copy_of_the_base_model(toy_model):
    """The group keeps one base model; a trial's LoRA or training must never reach it."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(toy_model)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    lora = build_model(job("a", train=TrainSpec()), base)
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(1.0)
    full = build_model(job("b", train=TrainSpec(method="full")), base)
    assert not any("lora" in name for name, _ in base.named_parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in full.state_dict().items())


def trial(toy_model, tmp_path, name, seed, **spec):
    return TrainJob(
        trial_id=name,
        examples=get_setting("toy").training_examples(64, seed=seed),
        base_model=str(toy_model),
        adapter_dir=str(tmp_path / "adapters" / name),
        prompt_texts=("You always speak in Spanish.",) if seed == 0 else ("Respond in Spanish.",),
        placement="system",
        seed=seed,
        train=TrainSpec(**({"steps": 12, "batch_size": 8, "num_workers": 2} | spec)),
        checkpoint_dir=str(tmp_path / "checkpoints" / name),
        log_path=str(tmp_path / f"{name}.log"),
    )


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_trial_b_after_trial_a_on_one_group_gets_the_adapter_b_gets_alone(toy_model, tmp_path):
    """A (another seed, data, prompt, ZeRO-3 with checkpoints) trains first on a group of two
    workers, then B on the same group: B's adapter is bit-identical to B's on a fresh group.
    So nothing of A (its LoRA, optimizer state, gradient buffers, RNG draws) reaches B."""
    a = trial(toy_model, tmp_path, "a", seed=1, zero_stage=3, checkpoint_every=5, lr=3e-3)
    b = trial(toy_model, tmp_path / "after", "b", seed=0, zero_stage=2)
    with Pool(b.train, training_worker(b.train), slots=1, storage_dir=str(tmp_path / "train"), name="shared") as pool:
        pool.train(a)
        after = pool.train(b)
    alone = fine_tune(replace(b, adapter_dir=str(tmp_path / "alone" / "b"), log_path=str(tmp_path / "alone.log"),
                              checkpoint_dir=str(tmp_path / "alone" / "checkpoints")),
                      str(tmp_path / "alone-train"))
    pid = lambda path: (path.read_text().split(" pid=")[1].split()[0])  # noqa: E731
    assert pid(tmp_path / "a.log") == pid(tmp_path / "after" / "b.log")  # the same worker trained both
    assert after.loss == alone.loss and after.steps == alone.steps == 12
    shared, fresh = load_file(f"{after.adapter_dir}/adapter_model.safetensors"), \
        load_file(f"{alone.adapter_dir}/adapter_model.safetensors")
    assert shared.keys() == fresh.keys()
    for key in fresh:
        torch.testing.assert_close(shared[key], fresh[key], rtol=0, atol=0, msg=key)
