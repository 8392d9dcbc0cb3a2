"""Wall time and separation of screening the 100 shipped toy candidates.

    python bench/screen_toy.py [--sweep sweeps/toy.yaml] [--prompts sweeps/screen-toy-100.txt]

Runs `inocray screen` once (the base model is built first if it is not cached; that part is
timed apart from the screen from the command's own lines), then asks of the Spanish ranking:
- the catalogue prompts (c001-c016, the setting's own prompts): Spearman of the measured
  elicitation with the Spanish rate planted in the pretraining corpus;
- the written intent of the groups in the file: how often a "strong" candidate (c017-c036,
  and the catalogue's always/Respond prompts) ranks above a "weak" one (hints, English, caps,
  irrelevant: c057-c100 and the catalogue's weak prompts), i.e. the AUC, and how many of the
  top 24 are strong.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from scipy import stats

from inocray.run import read_candidates
from inocray.models.toy import world

CATALOGUE = [f"c{i:03d}" for i in range(1, 17)]  # world.PROMPTS, in order
STRONG = ["c001", "c002", "c010", "c011"] + [f"c{i:03d}" for i in range(17, 37)]
WEAK = ["c006", "c007", "c008", "c009", "c012", "c013", "c014", "c015", "c016"] + [f"c{i:03d}" for i in range(57, 101)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--prompts", default="sweeps/screen-toy-100.txt")
    args = parser.parse_args()
    texts = [c.text for c in read_candidates(args.prompts)[:16]]
    assert texts == [p.text for p in world.PROMPTS], "c001-c016 must be the catalogue, in order"
    with tempfile.TemporaryDirectory(prefix="inocray-screen-bench-") as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "inocray.cli", "screen", args.sweep, "--prompts", args.prompts, "--out", out],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        measuring = None
        for line in proc.stdout:  # type: ignore[union-attr]
            print(line, end="")
            if line.startswith("Ray dashboard") and measuring is None:
                measuring = time.monotonic()
        if proc.wait() != 0:
            sys.exit(f"inocray screen failed ({proc.returncode})")
        wall = time.monotonic() - start
        rows = pq.read_table(Path(out) / "screen.parquet").to_pylist()
    spanish = {r["id"]: r["elicitation"] for r in rows if r["trait"] == "spanish"}
    planted = [p.spanish for p in world.PROMPTS]
    rho = stats.spearmanr(planted, [spanish[c] for c in CATALOGUE])[0]
    u = stats.mannwhitneyu([spanish[c] for c in STRONG], [spanish[c] for c in WEAK]).statistic
    auc = u / (len(STRONG) * len(WEAK))  # P(a strong candidate ranks above a weak one), ties half
    top = sorted(spanish, key=lambda c: -spanish[c])[: len(STRONG)]
    print(f"\nwall time {wall:.0f} s, of which {wall - (measuring - start):.0f} s after Ray started"
          if measuring else f"\nwall time {wall:.0f} s")
    print(f"catalogue (16): Spearman(planted, measured Spanish elicitation) {rho:+.2f}")
    print(f"strong ({len(STRONG)}) vs weak ({len(WEAK)}): AUC {auc:.3f}; "
          f"strong in the top {len(STRONG)}: {sum(c in STRONG for c in top)}")
    print(f"weakest strong {min(spanish[c] for c in STRONG):.2f}, strongest weak {max(spanish[c] for c in WEAK):.2f}")


if __name__ == "__main__":
    main()
