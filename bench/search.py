"""Does `inocray search` find what the full grid finds, and for what share of its training?

    python bench/search.py [--sweep sweeps/toy.yaml] [--candidates sweeps/search-toy.txt] \\
        [--search-seeds 0 1 2 3 4] [--seeds 3] [--out runs/bench-search] [--grid RUN_DIR]

Runs `inocray search` once per search seed, each in a fresh directory (search seed k: the
halving stage at seed k, confirmed on seeds k .. k + seeds - 1). For each search: its winner,
whether it is the grid's best prompt or inside the grid best's interval (the grid's objective of
the search's winner within the best's 95% t interval over the grid's seeds), its rank in the
grid, and its training steps as a share of the grid's. The grid is `inocray run` of the grid
file the first search writes (every prompt and the no-prompt control on --seeds seeds), or
--grid, a finished run over the same prompts whose trials have the same ids (the SmolLM2
study's: docs/search.md). Prints a Markdown table (docs/search.md) and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
from pathlib import Path

import yaml

from real_model import timed as run  # the same timing of one command (bench/ is this script's path)

from inocray.analysis import Objective, confirm
from inocray.results import read_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--candidates", default="sweeps/search-toy.txt")
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seeds", type=int, default=3, help="confirming seeds of each search, and the grid's")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-search"))
    parser.add_argument("--grid", type=Path, help="a finished run of the grid to compare with, instead of running it")
    args = parser.parse_args()

    if args.out.exists():
        shutil.rmtree(args.out)  # a benchmark measures fresh runs, never resumed ones
    args.out.mkdir(parents=True)
    log = args.out / "bench.log"
    loads: list[float] = []
    stop = threading.Event()
    threading.Thread(target=lambda: [loads.append(os.getloadavg()[0]) for _ in iter(lambda: stop.wait(10), True)],
                     daemon=True).start()

    searches = []
    for k in args.search_seeds:
        where = args.out / f"search-{k}"
        seconds = run(["inocray", "search", args.sweep, "--candidates", args.candidates, "--seed", str(k),
                       "--seeds", str(args.seeds), "--out", str(where)], log)
        summary = json.loads((where / "search" / "summary.json").read_text())
        searches.append((k, where, seconds, summary))
        if k == args.search_seeds[0]:
            grid_file = where / "search" / "grid.yaml"
    grid_dir = args.grid or args.out / "grid"
    grid_seconds = None if args.grid else run(["inocray", "run", str(grid_file), "--run-dir", str(grid_dir)], log)
    stop.set()

    record = json.loads((searches[0][1] / "search" / "search.json").read_text())
    objective = Objective(record["objective"]["suppress"], tuple(record["objective"]["keep"]),
                          record["objective"]["weight"])
    searched = set(yaml.safe_load(grid_file.read_text())["prompts"])  # a --grid run may hold more (its controls)
    rows = read_rows(grid_dir).to_pylist()
    prompts = sorted({r["prompt_id"] for r in rows if r["stage"] == "trained" and r["prompt_id"] in searched})
    seeds = sorted({r["seed"] for r in rows if r["stage"] == "trained" and r["prompt_id"] in searched})
    grid = confirm(rows, objective, prompts)
    best = grid.winner
    by_prompt = {f.prompt_id: f for f in grid.finalists}
    rank = {f.prompt_id: i for i, f in enumerate(grid.finalists, 1)}
    took = f"in {grid_seconds / 60:.1f} min" if grid_seconds else f"from {grid_dir}"
    print(f"grid: {len(prompts)} prompts + control x seeds {', '.join(map(str, seeds))} {took}; best "
          f"{best.prompt_id} {best.mean:+.3f} [{best.low:+.3f}, {best.high:+.3f}]; next "
          + ", ".join(f"{f.prompt_id} {f.mean:+.3f}" for f in grid.finalists[1:4]))
    print()
    print("| search seed | winner (its objective in the grid) | its rank in the grid | the grid's best? | within its interval? | steps | share of the grid's | time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    right = 0
    for k, _, seconds, summary in searches:
        winner = summary["winner"]
        in_grid = by_prompt[winner].mean
        same, inside = winner == best.prompt_id, best.low <= in_grid <= best.high
        right += same or inside
        print(f"| {k} | {winner} ({in_grid:+.3f}) | {rank[winner]} of {len(prompts)} | {'yes' if same else 'no'} | "
              f"{'yes' if inside else 'no'} | "
              f"{summary['steps']} | {summary['share_of_grid']:.0%} | {seconds / 60:.1f} min |")
    print()
    print(f"right {right} of {len(searches)}; mean share of the grid's steps "
          f"{sum(s[3]['share_of_grid'] for s in searches) / len(searches):.0%}; load (1-minute) mean "
          f"{sum(loads) / max(len(loads), 1):.2f}, max {max(loads, default=0):.2f}")


if __name__ == "__main__":
    main()
