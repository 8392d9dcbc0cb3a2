"""The toy sweep on two engine replicas: which replica answered which trial's evaluation requests.

    python bench/replicas_sweep.py [--sweep sweeps/toy.yaml] [--prompts 2] [--steps 40]

Runs `inocray.run._launch.run_sweep` on the sweep cut to its first N prompts (and the controls) and
one seed, with `engine.replicas: 2`, into a temporary run directory, and reads the sweep's Ray
metrics as the dashboard's Prometheus would, every second while it runs: the replicas'
`inocray_eval_requests` counter, tagged by Serve with the replica and by inocray with the
adapter (the trial, or TRIAL.stepN for a checkpoint). Prints one line per adapter: the replica
that answered it and how many requests.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import Scraper  # noqa: E402  (the suite's reader of the metrics export, as Prometheus reads it)


def main() -> None:
    import ray

    from inocray.run import run_sweep
    from inocray.config import load_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--prompts", type=int, default=2, help="the sweep's first N prompts")
    parser.add_argument("--steps", type=int, default=40, help="training steps of each trial")
    args = parser.parse_args()
    spec = load_sweep(args.sweep)
    spec = dataclasses.replace(spec, prompts=spec.prompts[: args.prompts], seeds=spec.seeds[:1],
                               train=dataclasses.replace(spec.train, steps=args.steps),
                               engine=dataclasses.replace(spec.engine, replicas=2))
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    scraper = Scraper()
    scraper.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as run_dir:
        run_sweep(spec, run_dir)
    wall = time.monotonic() - started
    time.sleep(12)  # the replicas' last export (every 10 s) before the scraper stops
    scraper.stop.set()
    scraper.join()
    served: dict[str, dict[str, float]] = defaultdict(dict)
    for tags, value in scraper.values("ray_inocray_eval_requests_total", app=f"inocray-{spec.hash()}").items():
        labels = dict(tags)
        served[labels["adapter"] or "(base model)"][labels["replica"]] = value
    print(f"\nsweep {spec.name} cut to {len(spec.prompts)} prompts x 1 seed, {args.steps} steps, "
          f"engine.replicas 2: {wall:.0f} s")
    print(f"{'adapter':<28} replica: requests")
    for adapter, replicas in sorted(served.items()):
        print(f"{adapter:<28} " + ", ".join(f"{r}: {v:g}" for r, v in sorted(replicas.items())))
    ray.shutdown()


if __name__ == "__main__":
    main()
