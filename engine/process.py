"""What only a program that owns its process may do (the CLI, a benchmark): process-wide
settings a library must leave alone. Workers forked by `run --workers` inherit them."""

from __future__ import annotations


def own_process() -> None:
    """tau2's logs into the standard logging tree (engine.tau2lib), and the shared task
    databases kept out of the garbage collector's full passes (engine.envs.tau2_cache)."""
    from engine import tau2lib
    from engine.envs import tau2_cache

    tau2lib.route_logs_to_logging()
    tau2_cache.freeze_shared_data()
