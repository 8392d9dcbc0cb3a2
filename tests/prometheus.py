"""Reading Ray's metrics back as Prometheus (and the dashboard's Prometheus) would.

Processes export every 10 s and a gauge leaves the export about 20 s after its process ends,
so a test runs a `Scraper` thread through the work whose metrics it checks.
"""

from __future__ import annotations

import threading
import urllib.request


def scrape() -> dict[tuple[str, frozenset], float]:
    """Every sample of this node's metrics export: (name, labels) -> value."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Scraper(threading.Thread):
    """Scrapes every second, as Prometheus would, and keeps the last value of every series seen:
    a gauge leaves the export about 20 s after its process ends (two export intervals)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[str, frozenset], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.seen |= scrape()
            except OSError:  # the agent restarting or busy: the next scrape tries again
                continue

    def values(self, name: str, **labels: str) -> dict[frozenset, float]:
        """The series of `name` (Prometheus spelling) whose labels include `labels`."""
        return {tags: v for (n, tags), v in self.seen.items() if n == name and frozenset(labels.items()) <= tags}

    def total(self, name: str, **labels: str) -> float:
        """A counter's count over every process that reported it."""
        return sum(self.values(name, **labels).values())
