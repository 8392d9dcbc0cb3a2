"""Long-lived training workers: one Ray Train worker group per slot takes trial after trial.

    Pool(train spec, worker, slots) opened by the launcher (run/_launch.py) for a whole sweep
      JobQueue actor               jobs waiting, the job each slot has in flight, loss reports
      slot i: TorchTrainer(job_loop).fit(), in a Ray task, for the life of the pool
        job_loop, every rank       imports and process group once, base model kept (train.Group)
          rank 0: queue.next  ->   broadcast the TrainJob -> every rank: train.train_loop(job)
          rank 0: queue.done       (a None job ends the loop, and with it the trainer)
    wait(queue, job, on_report)    a Tune trial: submit its job, hand each report (loss,
                                   snapshot saved) to `on_report`, return its TrainResult
    queue.stop(trial_id)           a search's scheduler stopped the trial: its job ends before
                                   its next step (or never starts) and the group takes the next
    queue.stopping(ticket, held)   a search's job asks before every step; after a snapshot it
                                   waits there until its trial has acted on that snapshot's
                                   evaluation (queue.judged: Tune's scheduler let it go on) or
                                   was stopped, so a stop at a rung saves the steps after it

A failure is Ray Train's to handle: a killed worker or an exception makes the trainer rebuild
the slot's group (FailureConfig(max_failures=-1)); the new rank 0 `attach`es and the queue
hands it the job the slot had in flight, which resumes from its newest checkpoint. The queue
counts a job's attempts: past `job.max_failures` retries the job fails, and so does its trial.
A slot whose group keeps failing with no job in flight ends.

A lost node is the queue's: a group cannot be rebuilt where nothing is free, so when the node
of a slot's rank 0 is gone the queue puts that slot's job back at the head of the line for any
live group (counted as an attempt). The queue and each slot's trainer run on the driver's node,
which the sweep cannot outlive anyway; a trial whose Tune actor was lost with the node is
retried by Tune, and its new attempt waits for the job already queued instead of adding one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from inocray.config import Holds, TrainSpec
from inocray.results import storage
from inocray.training import _loop as train
from inocray.training._loop import Stopped, TrainJob, TrainResult

IDLE = "idle"  # what rank 0 broadcasts when no job came: the other ranks wait in a broadcast,
IDLE_WAIT_S = 30.0  # so they are woken well inside the process group's timeout (30 min)
WAIT_S = 5.0  # a waiting trial asks for news this often
GIVE_UP = 3  # group rebuilds in a row with no job in flight before a slot ends
NODES_S = 2.0  # how often the queue looks for lost nodes (Ray itself notices one after its health checks)
CLOSE_S = 120.0  # how long closing waits for each slot's trainer to return before killing it
VERDICT_S = 900.0  # the longest a job held at a snapshot waits for its verdict before training on


@dataclass
class _Ticket:
    job: TrainJob
    reports: list[dict] = field(default_factory=list)
    attempts: int = 0
    error: str = ""  # the last attempt's error
    failed: str = ""  # why the job failed for good; "" while it has not
    finished: bool = False
    stopped: bool = False  # its trial was stopped: end the job before its next step
    node: str = ""  # the Ray node of the rank 0 that took it last
    judged: int = 0  # the newest snapshot step its trial has acted on (evaluated, reported, let go on)


class JobQueue:
    """The pool's jobs (a Ray actor of its own, run with asyncio so that waits do not block)."""

    def __init__(self, slots: int) -> None:
        self.tickets: dict[int, _Ticket] = {}
        self.pending: deque[int] = deque()
        self.running: dict[int, int] = {}  # slot -> ticket in flight
        self.rebuilds = dict.fromkeys(range(slots), -1)  # group starts since its last job ended, less one
        self.live = set(range(slots))
        self.nodes: dict[int, str] = {}  # slot -> the node of its rank 0, while its group runs
        self.lost: set[int] = set()  # slots whose group's node is gone, until a new group attaches
        self.closed = False
        self.changed = asyncio.Condition()
        self.watching: asyncio.Task | None = None

    async def submit(self, job: TrainJob) -> int:
        """A ticket for `job`; the trial's own ticket still waiting or in flight, if it has one
        (its Tune actor was lost and Tune runs it again), unless that one was stopped (a search's
        finalist continues past its stop with a new job)."""
        self._watch_nodes()
        for ticket, t in self.tickets.items():
            if t.job.trial_id == job.trial_id and not (t.finished or t.failed or t.stopped):
                return ticket
        ticket = len(self.tickets)
        self.tickets[ticket] = _Ticket(job)
        if self.live:
            self.pending.append(ticket)
        else:
            self.tickets[ticket].failed = "no training worker group is running"
        await self._notify()
        return ticket

    async def attach(self, slot: int) -> bool:
        """A group (re)started on `slot`: count a retry of its job in flight; False: end the slot."""
        self._watch_nodes()
        self.rebuilds[slot] += 1
        self.nodes.pop(slot, None)  # known again at its first `next`
        self.lost.discard(slot)
        ticket = self.running.get(slot)
        if ticket is not None:
            t = self.tickets[ticket]
            t.attempts += 1
            if t.attempts > t.job.max_failures + 1:
                self._end(slot, failed=f"the training worker group failed {t.attempts - 1} times; "
                                       f"last error: {t.error or 'a worker died'}")
                await self._notify()
        return slot in self.running or self.rebuilds[slot] <= GIVE_UP

    async def next(self, slot: int, timeout: float, node: str = ""):
        """The slot's job in flight, else the next waiting job: (ticket, job); IDLE after
        `timeout` without one; None once the pool is closed and no job waits. `node`: where
        the slot's rank 0 runs."""
        if node:
            self.nodes[slot] = node
        if slot not in self.running:
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait_for(lambda: self.pending or self.closed), timeout)
                except asyncio.TimeoutError:
                    return IDLE
            if not self.pending:
                return None
            self.running[slot] = self.pending.popleft()
        ticket = self.running[slot]
        self.tickets[ticket].attempts = max(self.tickets[ticket].attempts, 1)
        self.tickets[ticket].node = node
        return ticket, self.tickets[ticket].job

    async def stop(self, trial_id: str) -> None:
        """Stop the unfinished jobs of trial `trial_id`: a waiting one never starts, a running one
        ends before its next step (its worker loop asks `stopping`)."""
        for ticket, t in self.tickets.items():
            if t.job.trial_id == trial_id and not (t.finished or t.failed):
                t.stopped = True
                if ticket in self.pending:
                    self.pending.remove(ticket)
                    t.finished = True
        await self._notify()

    async def stopping(self, ticket: int, held: int = 0, timeout: float = VERDICT_S) -> bool:
        """Whether the job's trial was stopped, once its trial has judged the snapshot of step
        `held` (the job's newest; 0: none): until then the job waits here (at most `timeout`)."""
        t = self.tickets[ticket]
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: t.stopped or t.judged >= held), timeout)
            except asyncio.TimeoutError:
                pass
        return t.stopped

    async def judged(self, ticket: int, step: int) -> None:
        """The job's trial has acted on its snapshot of `step` (and every one before it)."""
        t = self.tickets[ticket]
        t.judged = max(t.judged, step)
        await self._notify()

    async def report(self, ticket: int, metrics: dict) -> None:
        self.tickets[ticket].reports.append(metrics)
        await self._notify()

    async def error(self, ticket: int, text: str) -> None:
        self.tickets[ticket].error = text

    async def done(self, slot: int) -> None:
        self._end(slot)
        await self._notify()

    async def wait(self, ticket: int, seen: int, timeout: float) -> tuple[list[dict], bool, str, bool]:
        """Reports after the first `seen`, whether the job finished, why it failed ("" if not),
        and whether its trial was stopped; returns when any of them changes, or after `timeout`."""
        t = self.tickets[ticket]
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: len(t.reports) > seen or t.finished or t.failed), timeout)
            except asyncio.TimeoutError:
                pass
        return t.reports[seen:], t.finished, t.failed, t.stopped

    async def node_of(self, ticket: int) -> str:
        return self.tickets[ticket].node

    async def lost_slots(self) -> list[int]:
        return sorted(self.lost)

    async def close(self) -> None:
        self.closed = True
        await self._notify()

    async def slot_ended(self, slot: int, error: str) -> None:
        """A slot's trainer returned or failed: its job in flight fails, and with no slot left, every job."""
        self.live.discard(slot)
        if slot in self.running:
            self._end(slot, failed=error or "its training worker group ended")
        if not self.live:
            while self.pending:
                self.tickets[self.pending.popleft()].failed = f"every training worker group ended: {error}"
        await self._notify()

    def _watch_nodes(self) -> None:
        if self.watching is None:
            self.watching = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        import ray

        while not self.closed and ray.is_initialized():
            await asyncio.sleep(NODES_S)
            await self.nodes_alive({n["NodeID"] for n in await asyncio.to_thread(ray.nodes) if n["Alive"]})

    async def nodes_alive(self, alive: set[str]) -> None:
        """Only the nodes `alive` are left: the job of a slot whose group ran elsewhere goes to the
        head of the line for the next live group (see the module's doc)."""
        gone = [slot for slot, node in self.nodes.items() if node not in alive]
        for slot in gone:
            node = self.nodes.pop(slot)
            self.lost.add(slot)
            if slot in self.running:
                self._requeue(slot, f"its training group's node {node} was lost")
        if gone:
            await self._notify()

    def _requeue(self, slot: int, error: str) -> None:
        """The slot's job in flight back to the head of the line, one attempt more; failed past
        its retries, and ended if its trial was stopped."""
        ticket = self.running.pop(slot)
        t = self.tickets[ticket]
        t.attempts, t.error = t.attempts + 1, error
        if t.stopped:  # its trial was stopped: nothing to resume
            t.finished = True
        elif t.attempts > t.job.max_failures + 1:
            t.failed = f"the training worker group failed {t.attempts - 1} times; last error: {error}"
        else:
            self.pending.appendleft(ticket)

    def _end(self, slot: int, failed: str = "") -> None:
        t = self.tickets[self.running.pop(slot)]
        t.finished, t.failed = not failed, failed
        self.rebuilds[slot] = 0

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


def job_loop(config: dict) -> None:
    """One worker of a slot's group, for the group's life: train every job the queue hands out."""
    import ray
    import ray.train

    queue, slot = config["queue"], config["slot"]
    context = ray.train.get_context()
    group = train.Group(context.get_world_rank(), context.get_world_size(), report=lambda metrics: None)
    share = group.share
    train.import_deepspeed(config["use_gpu"])  # once per worker, with transformers and peft
    import peft  # noqa: F401
    import transformers  # noqa: F401

    lead, node = group.rank == 0, ray.get_runtime_context().get_node_id()
    if not share(ray.get(queue.attach.remote(slot)) if lead else None):
        return
    while True:
        item = share(ray.get(queue.next.remote(slot, IDLE_WAIT_S, node)) if lead else None)
        if item is None:
            return
        if item == IDLE:
            continue
        ticket, job = item
        train.TrialLog(job, group.rank).write(f"taken by the training group of slot {slot} on node {node}")
        group.report = lambda metrics, ticket=ticket: queue.report.remote(ticket, metrics)
        group.stop_requested = lambda held, ticket=ticket: ray.get(queue.stopping.remote(ticket, held))
        try:
            train.train_loop(job, group)
        except Stopped:
            pass  # its newest state stays for a resume; the group takes the next job
        except BaseException as e:
            ray.get(queue.error.remote(ticket, f"rank {group.rank}: {type(e).__name__}: {e}"))
            traceback.print_exc()
            raise  # Ray Train rebuilds the group; the queue hands this job to it again
        if lead:
            ray.get(queue.done.remote(slot))


def run_slot(queue, slot: int, spec: TrainSpec, worker: Holds, storage_dir: str, name: str) -> None:
    """One slot's Ray Train run: `job_loop` on its workers (each reserving `worker`) until the
    queue closes."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = worker.resources()
    error = ""
    try:
        TorchTrainer(
            job_loop,
            train_loop_config={"queue": queue, "slot": slot, "use_gpu": spec.use_gpu},
            scaling_config=ScalingConfig(num_workers=spec.num_workers, use_gpu=spec.use_gpu,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=f"{name}-slot{slot}", storage_path=str(storage.resolve(storage_dir)),
                                 failure_config=FailureConfig(max_failures=-1)),
        ).fit()
    except Exception as e:  # noqa: BLE001 - told to the queue, which fails the slot's jobs
        error = f"{type(e).__name__}: {e}"
    ray.get(queue.slot_ended.remote(slot, error))


def wait(queue, job: TrainJob, on_report: Callable[[dict], None] | None = None) -> TrainResult:
    """Submit `job` to the pool's queue and wait for its model, handing each of its reports
    (loss; snapshot saved) to `on_report` as it comes, while training goes on; once `on_report`
    returns for a snapshot, the snapshot is judged (a search's job held there goes on). `Stopped`
    if the trial was stopped (queue.stop) before the job finished."""
    import ray

    ticket = ray.get(queue.submit.remote(job))
    seen = 0
    while True:
        reports, finished, failed, stopped = ray.get(queue.wait.remote(ticket, seen, WAIT_S))
        seen += len(reports)
        for metrics in reports:
            if on_report:
                on_report(metrics)
            if "snapshot" in metrics:
                ray.get(queue.judged.remote(ticket, metrics["snapshot"]))
        if failed:
            raise RuntimeError(f"training {job.trial_id} failed: {failed}")
        if stopped:
            raise Stopped(0)
        if finished:
            return dataclasses.replace(train.result(job), node=ray.get(queue.node_of.remote(ticket)))


def _here() -> dict:
    """Ray options that keep an actor or task on this process's node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}


class Pool:
    """`slots` long-lived worker groups of `spec.num_workers` workers, each reserving `worker`
    (config.Placement.worker), and their queue.

    A context manager: entering it starts the groups, leaving it ends every slot's loop and
    waits for its trainer.
    """

    def __init__(self, spec: TrainSpec, worker: Holds, slots: int, storage_dir: str, name: str) -> None:
        import ray

        self.spec, self.worker, self.slots, self.storage_dir, self.name = spec, worker, slots, storage_dir, name
        # Jobs wait here until the groups start. The queue and the trainers (each trainer's
        # controller runs where its `fit` does) stay on this node: on a worker node that is
        # lost they would take every slot's work with them.
        self.queue = ray.remote(num_cpus=0, **_here())(JobQueue).remote(slots)

    def __enter__(self) -> Pool:
        """Start each slot's group."""
        import ray

        slot_task = ray.remote(num_cpus=0, **_here())(run_slot)
        self.runs = [slot_task.remote(self.queue, slot, self.spec, self.worker, self.storage_dir, self.name)
                     for slot in range(self.slots)]
        return self

    def train(self, job: TrainJob, on_report: Callable[[dict], None] | None = None) -> TrainResult:
        return wait(self.queue, job, on_report)

    def __exit__(self, error_type, *_) -> None:
        """End every slot's loop; after an error (or Ctrl-C), without waiting for its job, nor
        ever for a slot whose node was lost (its trainer may wait for room for a new group)."""
        import ray

        ray.get(self.queue.close.remote())
        lost = set(ray.get(self.queue.lost_slots.remote()))
        waited = [run for slot, run in enumerate(self.runs) if slot not in lost]
        if waited and error_type is None:
            ray.wait(waited, num_returns=len(waited), timeout=CLOSE_S)
        _, running = ray.wait(self.runs, num_returns=len(self.runs), timeout=0)
        for run in running:  # a slot still training a job nobody waits for
            ray.cancel(run, force=True)
        ray.kill(self.queue)
