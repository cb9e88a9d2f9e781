"""Event-loop lag: how late a periodic wake-up fires. High lag means blocking work ran on
the loop, which stalls every episode at once.

A run of any length keeps a fixed amount of memory: samples go into a log-spaced histogram
(buckets 2% wide from 1 µs to about 30 minutes), so the percentiles are those of every
sample of the run to within one bucket, and the count and maximum are exact.
"""

from __future__ import annotations

import math
import resource
import time

import anyio

_FLOOR_S = 1e-6
"""Lags below this fall in the first bucket."""
_GROWTH = 1.02
"""Ratio of one bucket's upper edge to the one below: percentiles are within 2%."""
BUCKETS = 1 + math.ceil(math.log(2000.0 / _FLOOR_S) / math.log(_GROWTH))
"""Buckets of the histogram (the last one also holds anything longer)."""


def _bucket(lag_s: float) -> int:
    if lag_s < _FLOOR_S:
        return 0
    return min(BUCKETS - 1, 1 + int(math.log(lag_s / _FLOOR_S) / math.log(_GROWTH)))


def _upper_edge(bucket: int) -> float:
    return _FLOOR_S * _GROWTH**bucket


class LoopLagMonitor:
    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.count = 0
        """Samples taken."""
        self.max_s = 0.0
        """Largest lag seen."""
        self._histogram = [0] * BUCKETS

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            expected = time.perf_counter() + self.interval_s
            await anyio.sleep(self.interval_s)
            self.record(max(0.0, time.perf_counter() - expected))

    def record(self, lag_s: float) -> None:
        """Add one sample."""
        self.count += 1
        self.max_s = max(self.max_s, lag_s)
        self._histogram[_bucket(lag_s)] += 1

    def _quantile(self, q: float) -> float:
        rank = min(self.count, int(q * self.count) + 1)  # the sample a sorted list has at q
        seen = 0
        for bucket, n in enumerate(self._histogram):
            seen += n
            if seen >= rank:
                return 0.0 if bucket == 0 else min(self.max_s, _upper_edge(bucket))
        return self.max_s

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}
        return {
            "p50": self._quantile(0.5),
            "p99": self._quantile(0.99),
            "max": self.max_s,
            "samples": self.count,
        }


def peak_rss_mb() -> float:
    """Peak resident set size of this program, MB: Linux's VmHWM, which starts afresh at
    exec (`ru_maxrss` does not: a subprocess forked from a large parent reports at least the
    parent's size); `ru_maxrss` where /proc is missing."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
