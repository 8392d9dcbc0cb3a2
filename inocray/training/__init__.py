"""Training: DeepSpeed ZeRO over a peft LoRA adapter (or every weight), on long-lived Ray Train
worker groups that take trial after trial.

    Pool(train, worker, slots)   the groups, one per trial that runs at once (_workers.py)
    wait(queue, job, on_report)  a trial's TrainJob trained on a free group: its TrainResult,
                                 its reports (loss, snapshots) handed on as they come
    train_loop(job, group)       one trial on every rank of a group (_loop.py), with snapshots
                                 and resumable state (_checkpoints.py)
"""

from inocray.training._loop import (Group, Stopped, TrainJob, TrainResult, build_engine, build_model, deepspeed_config,
                                    import_deepspeed, train_loop)
from inocray.training._workers import Pool, wait

__all__ = ["Group", "Pool", "Stopped", "TrainJob", "TrainResult", "build_engine", "build_model", "deepspeed_config",
           "import_deepspeed", "train_loop", "wait"]
