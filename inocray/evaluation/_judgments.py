"""The API judge's persistent cache: one score per key, and the tokens each sweep paid for.

A SQLite file ($INOCRAY_JUDGMENTS, else `judgments.sqlite` in the inocray cache,
$INOCRAY_CACHE or ~/.cache/inocray), shared by every process of the machine that judges: each
judgment is its own transaction, so a killed process leaves every judgment it stored and
nothing half-written. On a cluster each node keeps its own file (SQLite over NFS is not safe:
cluster.yaml shares the model cache but sets $INOCRAY_JUDGMENTS to a node's own disk); a
judgment is then paid for at most once per node.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from inocray.models import default_cache_root

__all__ = ["Judgments", "JUDGMENTS_FILE"]

JUDGMENTS_FILE = "judgments.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS judgment (key TEXT PRIMARY KEY, score REAL);
CREATE TABLE IF NOT EXISTS spent (sweep TEXT PRIMARY KEY, requests INTEGER, prompt_tokens INTEGER,
                                  completion_tokens INTEGER);
"""


class Judgments:
    """Scores by key (None: the judge wrote no number), kept across processes and restarts."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is None:
            path = os.environ.get("INOCRAY_JUDGMENTS") or default_cache_root() / JUDGMENTS_FILE
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def get(self, keys: set[str]) -> dict[str, float | None]:
        found, keys = {}, sorted(keys)
        for start in range(0, len(keys), 500):  # SQLite's limit on parameters in one statement
            part = keys[start:start + 500]
            marks = ",".join("?" * len(part))
            found |= dict(self._db.execute(f"SELECT key, score FROM judgment WHERE key IN ({marks})", part))
        return found

    def put(self, key: str, score: float | None, usage: dict, sweep: str) -> None:
        """Store one judgment and count what it cost under `sweep`, in one transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO judgment VALUES (?, ?)", (key, score))
            self._db.execute("INSERT INTO spent VALUES (?, 1, ?, ?) ON CONFLICT(sweep) DO UPDATE SET "
                             "requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                             "completion_tokens = completion_tokens + excluded.completion_tokens",
                             (sweep, usage["prompt_tokens"], usage["completion_tokens"]))

    def spent(self, sweep: str) -> tuple[int, int, int]:
        """(requests, prompt tokens, completion tokens) paid for under `sweep`, over all its runs."""
        row = self._db.execute("SELECT requests, prompt_tokens, completion_tokens FROM spent WHERE sweep = ?",
                               (sweep,)).fetchone()
        return tuple(row) if row else (0, 0, 0)
