"""Event-loop lag: how late a periodic wake-up fires. High lag means blocking work ran on
the loop, which stalls every episode at once."""

from __future__ import annotations

import resource
import time

import anyio


class LoopLagMonitor:
    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            expected = time.perf_counter() + self.interval_s
            await anyio.sleep(self.interval_s)
            self.samples.append(max(0.0, time.perf_counter() - expected))

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}
        ordered = sorted(self.samples)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1], "samples": len(ordered)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
