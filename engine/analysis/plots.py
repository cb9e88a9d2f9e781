"""PNG plots of a run, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine.analysis.metrics import Summary
from engine.analysis.series import CDF_POINTS, HISTOGRAM_BINS, Series

PLOT_TITLES: dict[str, str] = {
    "reward_histogram": "Reward histogram",
    "pass_hat_k": "pass^k",
    "task_heatmap": "Per-task reward over samples",
    "latency_cdf": "Latency CDFs",
    "in_flight": "Episodes in flight",
    "tool_errors": "Tool error rates",
}
"""File stem (``<stem>.png``) -> title, in report order."""

_DPI = 100
_MAX_TOOL_BARS = 25


def render_plots(summary: Summary, series: Series) -> dict[str, bytes]:
    """Every plot as PNG bytes, keyed by the stems of :data:`PLOT_TITLES`."""
    drawers: dict[str, Callable[[], Figure]] = {
        "reward_histogram": lambda: _reward_histogram(series),
        "pass_hat_k": lambda: _pass_hat_k(summary),
        "task_heatmap": lambda: _task_heatmap(series),
        "latency_cdf": lambda: _latency_cdf(series),
        "in_flight": lambda: _in_flight(series),
        "tool_errors": lambda: _tool_errors(summary),
    }
    return {name: _png(draw()) for name, draw in drawers.items()}


def write_plots(directory: Path, pngs: dict[str, bytes]) -> list[Path]:
    """Write ``<stem>.png`` files into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in pngs.items():
        path = directory / f"{name}.png"
        path.write_bytes(data)
        written.append(path)
    return written


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _figure(name: str, size: tuple[float, float] = (8.0, 4.5)) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(PLOT_TITLES[name])
    axes.grid(True, alpha=0.3)
    return figure, axes


def _no_data(axes: Axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _reward_histogram(series: Series) -> Figure:
    figure, axes = _figure("reward_histogram")
    width = 1.0 / HISTOGRAM_BINS
    lefts = [i * width for i in range(HISTOGRAM_BINS)]
    axes.bar(lefts, series.reward_bins, width=width, align="edge", color="#4c72b0", edgecolor="white")
    axes.set_xlim(0, 1)
    axes.set_xlabel("reward (counted episodes)")
    axes.set_ylabel("episodes")
    if not any(series.reward_bins):
        _no_data(axes, "counted episodes")
    return figure


def _pass_hat_k(summary: Summary) -> Figure:
    figure, axes = _figure("pass_hat_k")
    curves = [("all", summary.pass_hat_k)]
    if len(summary.domains) > 1:
        curves += [(d.domain, d.pass_hat_k) for d in summary.domains]
    drawn = False
    for label, values in curves:
        if values:
            ks = sorted(values)
            axes.plot(ks, [values[k] for k in ks], marker="o", label=label)
            drawn = True
    if not drawn:
        _no_data(axes, "counted episodes")
        return figure
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("k")
    axes.set_ylabel("pass^k")
    axes.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    axes.legend()
    return figure


def _task_heatmap(series: Series) -> Figure:
    grid = series.task_grid
    height = min(max(3.0, 0.22 * len(grid.tasks) + 1.5), 16.0)
    figure, axes = _figure("task_heatmap", (9.0, height))
    if not grid.tasks or not grid.samples:
        _no_data(axes, "final episodes")
        return figure
    values = [[math.nan if v is None else v for v in row] for row in grid.rewards]
    image = axes.imshow(values, aspect="auto", cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
    image.cmap.set_bad("#bbbbbb")
    axes.grid(False)
    axes.set_yticks(range(len(grid.tasks)), labels=grid.tasks, fontsize=7)
    step = max(1, len(grid.samples) // 20)
    axes.set_xticks(range(0, len(grid.samples), step), labels=[str(s) for s in grid.samples[::step]])
    axes.set_xlabel("sample (grey: missing or excluded)")
    shown = len(grid.tasks)
    if shown < grid.total_tasks:
        axes.set_title(f"{PLOT_TITLES['task_heatmap']} ({shown} lowest of {grid.total_tasks})")
    figure.colorbar(image, ax=axes, label="reward")
    return figure


def _latency_cdf(series: Series) -> Figure:
    figure, axes = _figure("latency_cdf")
    levels = [i / (CDF_POINTS - 1) for i in range(CDF_POINTS)]
    positive = False
    for label, quantiles in series.latency_cdfs.items():
        style = "-" if label.startswith(("model", "all")) else ":"
        axes.plot(quantiles, levels, style, label=label, drawstyle="steps-post")
        positive = positive or any(q > 0 for q in quantiles)
    if not series.latency_cdfs:
        _no_data(axes, "latencies")
        return figure
    if positive:
        axes.set_xscale("log")
    axes.set_xlabel("latency (s)")
    axes.set_ylabel("fraction of calls")
    axes.set_ylim(0, 1.01)
    axes.legend(fontsize=8)
    return figure


def _in_flight(series: Series) -> Figure:
    figure, axes = _figure("in_flight")
    if not series.in_flight:
        _no_data(axes, "episode_start events")
        return figure
    times = [t for t, _ in series.in_flight]
    counts = [n for _, n in series.in_flight]
    axes.step(times, counts, where="post", color="#55a868")
    axes.fill_between(times, counts, step="post", alpha=0.3, color="#55a868")
    axes.set_xlabel("seconds since first episode_start")
    axes.set_ylabel("episodes in flight")
    axes.set_ylim(bottom=0)
    return figure


def _tool_errors(summary: Summary) -> Figure:
    tools = summary.tools[:_MAX_TOOL_BARS]
    height = min(max(3.0, 0.3 * len(tools) + 1.5), 12.0)
    figure, axes = _figure("tool_errors", (8.0, height))
    if not tools:
        _no_data(axes, "tool calls")
        return figure
    names = [f"{t.name} ({t.calls:,})" for t in tools][::-1]
    rates = [t.error_rate for t in tools][::-1]
    axes.barh(names, rates, color="#c44e52")
    axes.set_xlim(0, max(0.05, max(rates) * 1.15))
    axes.set_xlabel("error rate (calls in brackets)")
    return figure
