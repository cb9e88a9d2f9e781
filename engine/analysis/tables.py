"""The summary as titled tables of formatted cells, shared by the terminal and HTML reports."""

from __future__ import annotations

from dataclasses import dataclass

from engine.analysis.compare import Comparison
from engine.analysis.load import EXCLUDED_STATUSES
from engine.analysis.metrics import Summary

MAX_TASK_ROWS = 25
MAX_COMPARE_ROWS = 25


@dataclass(frozen=True, kw_only=True)
class TableData:
    """One table, ready to render."""

    title: str
    """Shown above the table."""
    columns: tuple[str, ...]
    """Column headers."""
    rows: tuple[tuple[str, ...], ...]
    """Formatted cells."""
    text_columns: int = 1
    """The first this many columns are text (left-aligned); the rest are numbers."""
    note: str | None = None
    """A sentence shown under the table."""


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


def headline(summary: Summary) -> str:
    """One line: files, lines, malformed lines and events by name."""
    return (
        f"{len(summary.files)} file(s), {summary.lines:,} lines"
        f" ({summary.malformed_lines:,} malformed, skipped): "
        + ", ".join(f"{name} {n:,}" for name, n in summary.events.items())
    )


def summary_tables(summary: Summary) -> list[TableData]:
    """Every table of the summary, in reading order."""
    tables = [
        _stamps(summary),
        _status(summary),
        _reward(summary),
        _domains(summary),
        _tasks(summary),
        _tools(summary),
        _shape(summary),
        _model(summary),
        _failures(summary),
    ]
    if summary.retries:
        tables.append(_retries(summary))
    tables.append(_runs(summary))
    return tables


def _stamps(summary: Summary) -> TableData:
    domains = {row.domain for row in summary.stamps}
    mixed = sorted(d for d in domains if sum(1 for r in summary.stamps if r.domain == d) > 1)
    return TableData(
        title="Comparability stamp (what the rewards were computed on)",
        columns=("domain", "data source", "data hash", "tau2", "control", "user", "judge", "episodes"),
        rows=tuple(
            (
                row.domain,
                *(
                    (
                        str(row.stamp["data_source"]),
                        str(row.stamp["data_hash"])[:19],
                        str(row.stamp["tau2_version"]),
                        str(row.stamp["control"]),
                        _user(row.stamp),
                        str(row.stamp["judge_model"] or "-"),
                    )
                    if row.stamp is not None
                    else ("not recorded", "-", "-", "-", "-", "-")
                ),
                fmt(row.episodes),
            )
            for row in summary.stamps
        ),
        text_columns=7,
        note=(
            f"WARNING: episodes of {', '.join(mixed)} have different stamps: their rewards are not comparable"
            if mixed
            else None
        ),
    )


def _user(stamp: dict[str, object]) -> str:
    if stamp.get("user") is None:
        return "-"
    model = stamp.get("user_model")
    return f"{stamp['user']} ({model})" if model else str(stamp["user"])


def _status(summary: Summary) -> TableData:
    eps = summary.episodes
    return TableData(
        title="Episodes by status",
        columns=("status", "final", "all attempts"),
        rows=tuple((r.status, fmt(r.final), fmt(r.all)) for r in eps.by_status),
        note=(
            f"final = latest attempt per (domain, task, sample): {eps.final:,}; "
            f"counted for reward {eps.counted:,}; excluded {eps.excluded:,} "
            f"({', '.join(EXCLUDED_STATUSES)}); unfinished (no episode_end) {eps.unfinished:,}"
        ),
    )


def _reward(summary: Summary) -> TableData:
    r = summary.reward
    rows = [
        ("episodes", fmt(r.n)),
        ("mean reward", fmt(r.mean, 4)),
        ("95% CI", f"[{fmt(r.ci95_low, 4)}, {fmt(r.ci95_high, 4)}]"),
        ("successes (reward = 1)", fmt(r.successes)),
    ]
    rows += [(f"pass^{k}", fmt(v, 4)) for k, v in summary.pass_hat_k.items()]
    return TableData(title="Reward (counted episodes)", columns=("metric", "value"), rows=tuple(rows))


def _domains(summary: Summary) -> TableData:
    rows = []
    for d in summary.domains:
        last = max(d.pass_hat_k) if d.pass_hat_k else None
        rows.append(
            (
                d.domain,
                fmt(d.tasks),
                fmt(d.episodes),
                fmt(d.excluded),
                fmt(d.mean_reward, 4),
                f"[{fmt(d.ci95_low)}, {fmt(d.ci95_high)}]",
                fmt(d.pass_hat_k.get(1), 4),
                "-" if last is None else f"{d.pass_hat_k[last]:.4f} (k={last})",
            )
        )
    return TableData(
        title="Per domain",
        columns=(
            "domain",
            "tasks",
            "episodes",
            "excluded",
            "mean reward",
            "95% CI",
            "pass^1",
            "pass^max",
        ),
        rows=tuple(rows),
    )


def _tasks(summary: Summary) -> TableData:
    shown = summary.tasks[:MAX_TASK_ROWS]
    return TableData(
        title="Per task (lowest mean reward first)",
        columns=("domain/task", "samples", "successes", "mean reward", "excluded"),
        rows=tuple(
            (
                f"{t.domain}/{t.task_id}",
                fmt(t.samples),
                fmt(t.successes),
                fmt(t.mean_reward),
                fmt(t.excluded),
            )
            for t in shown
        ),
        note=(
            f"{len(shown)} of {len(summary.tasks):,} tasks shown; --json lists all"
            if len(shown) < len(summary.tasks)
            else None
        ),
    )


def _tools(summary: Summary) -> TableData:
    return TableData(
        title="Tool usage",
        columns=("tool", "calls", "errors", "error rate", "p50 ms", "p95 ms", "p99 ms"),
        rows=tuple(
            (
                t.name,
                fmt(t.calls),
                fmt(t.errors),
                f"{t.error_rate:.1%}",
                fmt_ms(t.latency_p50_s),
                fmt_ms(t.latency_p95_s),
                fmt_ms(t.latency_p99_s),
            )
            for t in summary.tools
        ),
    )


def _shape(summary: Summary) -> TableData:
    s = summary.episode_shape
    return TableData(
        title="Per episode (final episodes)",
        columns=("metric", "mean", "p50", "p95", "max"),
        rows=(
            (
                "turns",
                fmt(s.turns_mean, 1),
                fmt(s.turns_p50, 1),
                fmt(s.turns_p95, 1),
                fmt(s.turns_max),
            ),
            ("tool calls", fmt(s.tool_calls_mean, 1), "-", "-", "-"),
            (
                "duration s",
                fmt(s.duration_mean_s, 2),
                fmt(s.duration_p50_s, 2),
                fmt(s.duration_p95_s, 2),
                "-",
            ),
        ),
    )


def _model(summary: Summary) -> TableData:
    return TableData(
        title="Model calls",
        columns=(
            "role",
            "model",
            "messages",
            "calls",
            "mean ms",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "input tok",
            "output tok",
            "total tok",
        ),
        rows=tuple(
            (
                m.role,
                m.model or "-",
                fmt(m.messages),
                fmt(m.calls),
                fmt_ms(m.latency_mean_s),
                fmt_ms(m.latency_p50_s),
                fmt_ms(m.latency_p95_s),
                fmt_ms(m.latency_p99_s),
                fmt(m.input_tokens),
                fmt(m.output_tokens),
                fmt(m.total_tokens),
            )
            for m in summary.model
        ),
        text_columns=2,
        note="calls: messages with a model call (the fixed greeting has none); "
        "tokens summed where usage is known",
    )


def _failures(summary: Summary) -> TableData:
    return TableData(
        title="Failure taxonomy (all attempts)",
        columns=("status", "error type", "episodes"),
        rows=tuple((f.status, f.error_type or "-", fmt(f.count)) for f in summary.failures),
        text_columns=2,
    )


def _retries(summary: Summary) -> TableData:
    return TableData(
        title="Retries",
        columns=("scope", "error type", "retries", "backoff s"),
        rows=tuple(
            (r.scope or "-", r.error_type or "-", fmt(r.count), fmt(r.backoff_total_s, 2))
            for r in summary.retries
        ),
        text_columns=2,
    )


def _runs(summary: Summary) -> TableData:
    rows = []
    for run in summary.runs:
        ended = "interrupted" if run.interrupted else ("yes" if run.ended else "no run_end")
        rows.append(
            (
                run.run_id,
                fmt(run.episodes_planned),
                fmt(run.episodes),
                fmt(run.duration_s, 1),
                fmt(run.episodes_per_s, 2),
                fmt_ms(run.loop_lag_p50_s),
                fmt_ms(run.loop_lag_p99_s),
                fmt_ms(run.loop_lag_max_s),
                fmt(run.peak_rss_mb, 1),
                ended,
            )
        )
    return TableData(
        title="Runs",
        columns=(
            "run",
            "planned",
            "episodes",
            "duration s",
            "episodes/s",
            "loop lag p50 ms",
            "p99 ms",
            "max ms",
            "peak RSS MB",
            "ended",
        ),
        rows=tuple(rows),
    )


def comparison_headline(comparison: Comparison) -> str:
    """Three lines: each run's mean reward, then the task-level verdict; first a warning
    when the runs' stamps differ."""
    c = comparison
    warning = ""
    if not c.comparable:
        warning = (
            "WARNING: NOT COMPARABLE, the runs' comparability stamps differ: "
            + " | ".join(c.stamp_differences)
            + "\n"
        )
    return warning + (
        f"A: {', '.join(c.a_files)}  mean reward {fmt(c.a_mean_reward, 4)}\n"
        f"B: {', '.join(c.b_files)}  mean reward {fmt(c.b_mean_reward, 4)}\n"
        f"{c.common_tasks:,} common tasks: mean delta {fmt(c.mean_task_delta, 4)}, "
        f"improved {c.improved:,}, regressed {c.regressed:,}, unchanged {c.unchanged:,}; "
        f"only in A {c.only_a:,}, only in B {c.only_b:,}"
    )


def comparison_table(comparison: Comparison) -> TableData:
    """Per-task mean rewards of both runs and their delta."""
    shown = comparison.tasks[:MAX_COMPARE_ROWS]
    return TableData(
        title="Per-task mean reward, B - A (largest regressions first)",
        columns=("domain/task", "A samples", "A mean", "B samples", "B mean", "delta"),
        rows=tuple(
            (
                f"{d.domain}/{d.task_id}",
                fmt(d.a_samples),
                fmt(d.a_mean_reward),
                fmt(d.b_samples),
                fmt(d.b_mean_reward),
                "-" if d.delta is None else f"{d.delta:+.3f}",
            )
            for d in shown
        ),
        note=(
            f"{len(shown)} of {len(comparison.tasks):,} tasks shown; --json lists all"
            if len(shown) < len(comparison.tasks)
            else None
        ),
    )
