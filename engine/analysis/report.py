"""The terminal summary: rich tables for a :class:`Summary` and a :class:`Comparison`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.analysis.compare import Comparison
from engine.analysis.load import EXCLUDED_STATUSES
from engine.analysis.metrics import Summary

MAX_TASK_ROWS = 25
MAX_COMPARE_ROWS = 25


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number for a table cell; ``-`` when unknown."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_ms(seconds: float | None) -> str:
    """Seconds shown as milliseconds."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _table(title: str, columns: Sequence[str], *, caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    return table


def summary_renderables(summary: Summary) -> list[RenderableType]:
    """Every table of the summary, in reading order."""
    out: list[RenderableType] = []
    eps = summary.episodes
    out.append(
        Text(
            f"{len(summary.files)} file(s), {summary.lines:,} lines"
            f" ({summary.malformed_lines:,} malformed, skipped): "
            + ", ".join(f"{name} {n:,}" for name, n in summary.events.items())
        )
    )

    status = _table(
        "Episodes by status",
        ["status", "final", "all attempts"],
        caption=(
            f"final = latest attempt per (domain, task, sample): {eps.final:,}; "
            f"counted for reward {eps.counted:,}; excluded {eps.excluded:,} "
            f"({', '.join(EXCLUDED_STATUSES)}); unfinished (no episode_end) {eps.unfinished:,}"
        ),
    )
    for row in eps.by_status:
        status.add_row(row.status, fmt(row.final), fmt(row.all))
    out.append(status)

    r = summary.reward
    reward = _table("Reward (counted episodes)", ["metric", "value"])
    reward.add_row("episodes", fmt(r.n))
    reward.add_row("mean reward", fmt(r.mean, 4))
    reward.add_row("95% CI", f"[{fmt(r.ci95_low, 4)}, {fmt(r.ci95_high, 4)}]")
    reward.add_row("successes (reward = 1)", fmt(r.successes))
    for k, value in summary.pass_hat_k.items():
        reward.add_row(f"pass^{k}", fmt(value, 4))
    out.append(reward)

    domains = _table(
        "Per domain",
        ["domain", "tasks", "episodes", "excluded", "mean reward", "95% CI", "pass^1", "pass^max"],
    )
    for d in summary.domains:
        last = max(d.pass_hat_k) if d.pass_hat_k else None
        domains.add_row(
            d.domain,
            fmt(d.tasks),
            fmt(d.episodes),
            fmt(d.excluded),
            fmt(d.mean_reward, 4),
            f"[{fmt(d.ci95_low)}, {fmt(d.ci95_high)}]",
            fmt(d.pass_hat_k.get(1), 4),
            "-" if last is None else f"{d.pass_hat_k[last]:.4f} (k={last})",
        )
    out.append(domains)

    shown = summary.tasks[:MAX_TASK_ROWS]
    tasks = _table(
        "Per task (lowest mean reward first)",
        ["domain/task", "samples", "successes", "mean reward", "excluded"],
        caption=(
            f"{len(shown)} of {len(summary.tasks):,} tasks shown; --json lists all"
            if len(shown) < len(summary.tasks)
            else None
        ),
    )
    for t in shown:
        tasks.add_row(
            f"{t.domain}/{t.task_id}",
            fmt(t.samples),
            fmt(t.successes),
            fmt(t.mean_reward, 3),
            fmt(t.excluded),
        )
    out.append(tasks)

    tools = _table(
        "Tool usage",
        ["tool", "calls", "errors", "error rate", "p50 ms", "p95 ms", "p99 ms"],
    )
    for tool in summary.tools:
        tools.add_row(
            tool.name,
            fmt(tool.calls),
            fmt(tool.errors),
            f"{tool.error_rate:.1%}",
            fmt_ms(tool.latency_p50_s),
            fmt_ms(tool.latency_p95_s),
            fmt_ms(tool.latency_p99_s),
        )
    out.append(tools)

    s = summary.episode_shape
    shape = _table("Per episode (final episodes)", ["metric", "mean", "p50", "p95", "max"])
    shape.add_row("turns", fmt(s.turns_mean, 1), fmt(s.turns_p50, 1), fmt(s.turns_p95, 1),
                  fmt(s.turns_max))
    shape.add_row("tool calls", fmt(s.tool_calls_mean, 1), "-", "-", "-")
    shape.add_row("duration s", fmt(s.duration_mean_s, 2), fmt(s.duration_p50_s, 2),
                  fmt(s.duration_p95_s, 2), "-")
    out.append(shape)

    model = _table(
        "Model calls (latency of messages with a model call; tokens where usage is known)",
        ["role", "model", "messages", "calls", "mean ms", "p50 ms", "p95 ms", "p99 ms",
         "input tok", "output tok", "total tok"],
    )
    for m in summary.model:
        model.add_row(
            m.role, m.model or "-", fmt(m.messages), fmt(m.calls), fmt_ms(m.latency_mean_s),
            fmt_ms(m.latency_p50_s), fmt_ms(m.latency_p95_s), fmt_ms(m.latency_p99_s),
            fmt(m.input_tokens), fmt(m.output_tokens), fmt(m.total_tokens),
        )
    out.append(model)

    failures = _table("Failure taxonomy (all attempts)", ["status", "error type", "episodes"])
    for f in summary.failures:
        failures.add_row(f.status, f.error_type or "-", fmt(f.count))
    out.append(failures)

    if summary.retries:
        retries = _table("Retries", ["scope", "error type", "retries", "backoff s"])
        for rr in summary.retries:
            retries.add_row(rr.scope or "-", rr.error_type or "-", fmt(rr.count),
                            fmt(rr.backoff_total_s, 2))
        out.append(retries)

    runs = _table(
        "Runs",
        ["run", "planned", "episodes", "duration s", "episodes/s", "loop lag p50 ms",
         "p99 ms", "max ms", "peak RSS MB", "ended"],
    )
    for run in summary.runs:
        ended = "interrupted" if run.interrupted else ("yes" if run.ended else "no run_end")
        runs.add_row(
            run.run_id, fmt(run.episodes_planned), fmt(run.episodes), fmt(run.duration_s, 1),
            fmt(run.episodes_per_s, 2), fmt_ms(run.loop_lag_p50_s), fmt_ms(run.loop_lag_p99_s),
            fmt_ms(run.loop_lag_max_s), fmt(run.peak_rss_mb, 1), ended,
        )
    out.append(runs)
    return out


def comparison_renderables(comparison: Comparison) -> list[RenderableType]:
    """The comparison header and its per-task delta table."""
    c = comparison
    head = Text(
        f"A: {', '.join(c.a_files)}  mean reward {fmt(c.a_mean_reward, 4)}\n"
        f"B: {', '.join(c.b_files)}  mean reward {fmt(c.b_mean_reward, 4)}\n"
        f"{c.common_tasks:,} common tasks: mean delta {fmt(c.mean_task_delta, 4)}, "
        f"improved {c.improved:,}, regressed {c.regressed:,}, unchanged {c.unchanged:,}; "
        f"only in A {c.only_a:,}, only in B {c.only_b:,}"
    )
    shown = c.tasks[:MAX_COMPARE_ROWS]
    table = _table(
        "Per-task mean reward, B - A (largest regressions first)",
        ["domain/task", "A samples", "A mean", "B samples", "B mean", "delta"],
        caption=(
            f"{len(shown)} of {len(c.tasks):,} tasks shown; --json lists all"
            if len(shown) < len(c.tasks)
            else None
        ),
    )
    for d in shown:
        delta = "-" if d.delta is None else f"{d.delta:+.3f}"
        table.add_row(f"{d.domain}/{d.task_id}", fmt(d.a_samples), fmt(d.a_mean_reward),
                      fmt(d.b_samples), fmt(d.b_mean_reward), delta)
    return [head, table]


def print_report(
    console: Console, summary: Summary | None, comparison: Comparison | None = None
) -> None:
    """Print the summary and/or comparison tables."""
    parts: list[RenderableType] = []
    if summary is not None:
        parts += summary_renderables(summary)
    if comparison is not None:
        parts += comparison_renderables(comparison)
    console.print(Group(*parts))
