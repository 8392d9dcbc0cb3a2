"""What each part of a running sweep reserves on the Ray cluster, said once.

A sweep holds for its whole life its engine apps (engine.replicas replicas per base model, each
reserving `replica`), a judge app of its own if it names a judge model (one replica of
`own_engine`), and one long-lived training group per slot (`workers` workers of `worker`
each). Each running trial holds its Tune trainable (`trainable`) and, fully fine-tuned, an
engine app of its own for its snapshots (`own_engine`) beside its group. The resource check
(run/_resources.py) counts these values, and the engines (evaluation.serve), the worker pool
(training.Pool) and the Tune trainable reserve them: nothing is kept in step by hand.

An engine of one model alone (a fully fine-tuned snapshot, a judge) reserves GPUs but no CPU:
it starts while the trials' workers and the shared engine hold the CPUs they asked for, and on
a small Ray (2 CPUs: two groups at 0.49, the shared engine at 0.5) any CPU it asked for would
never come free.
"""

from __future__ import annotations

from dataclasses import dataclass

from inocray.config._spec import EngineSpec, SweepSpec, TrainSpec

TRIAL_CPU = 0.01  # a trial's Tune trainable: it waits for its group, which holds the real CPUs


@dataclass(frozen=True)
class Holds:
    """CPUs and GPUs one Ray actor reserves."""

    cpu: float = 0.0
    gpu: float = 0.0

    def __add__(self, other: Holds) -> Holds:
        return Holds(self.cpu + other.cpu, self.gpu + other.gpu)

    def __mul__(self, n: float) -> Holds:
        return Holds(self.cpu * n, self.gpu * n)

    def actor_options(self) -> dict[str, float]:
        """As Ray's `num_cpus` / `num_gpus` actor options."""
        return {"num_cpus": self.cpu} | ({"num_gpus": self.gpu} if self.gpu else {})

    def resources(self) -> dict[str, float]:
        """As a Ray resource dict ({"CPU": ..., "GPU": ...})."""
        return {"CPU": self.cpu} | ({"GPU": self.gpu} if self.gpu else {})


def engine_replica(engine: EngineSpec) -> Holds:
    """What each replica of a shared engine app reserves."""
    return Holds(engine.num_cpus, engine.num_gpus)


def own_engine(engine: EngineSpec) -> Holds:
    """What the one replica of an engine of one model alone reserves (see above: no CPU)."""
    return Holds(0.0, engine.num_gpus)


def training_worker(train: TrainSpec) -> Holds:
    """What each worker of a training group reserves."""
    return Holds(train.cpus_per_worker, 1.0 if train.use_gpu else 0.0)


@dataclass(frozen=True)
class Placement:
    replica: Holds  # each replica of a shared engine app
    replicas: int  # the shared engines' replicas, all apps: engine.replicas per base model
    judge: Holds | None  # a judge app of its own (one replica), or None
    worker: Holds  # each worker of a training group
    workers: int  # workers per group
    trainable: Holds  # a trial's Tune trainable
    own_engine: Holds | None  # a fully fine-tuned trial's engine for its snapshots, or None

    @property
    def engines(self) -> Holds:
        """What the sweep's engine apps hold for its whole life."""
        return self.replica * self.replicas + (self.judge or Holds())

    @property
    def trial(self) -> Holds:
        """What one running trial holds at most: its trainable, its group, its own engine."""
        return self.trainable + self.worker * self.workers + (self.own_engine or Holds())


def placement(spec: SweepSpec, models: int, full: bool) -> Placement:
    """The placement of a sweep of `models` base models; `full`: some cell fine-tunes every
    weight (its trials evaluate on an engine of their own)."""
    judge = own_engine(spec.engine) if spec.eval.judge_model not in ("", "base") else None
    return Placement(replica=engine_replica(spec.engine), replicas=spec.engine.replicas * models, judge=judge,
                     worker=training_worker(spec.train), workers=spec.train.num_workers,
                     trainable=Holds(TRIAL_CPU), own_engine=own_engine(spec.engine) if full else None)
