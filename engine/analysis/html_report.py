"""A self-contained HTML report: the summary tables and the plots inlined as base64 PNGs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from html import escape

from engine.analysis.compare import Comparison
from engine.analysis.metrics import Summary
from engine.analysis.plots import PLOT_TITLES
from engine.analysis.tables import (
    TableData,
    comparison_headline,
    comparison_table,
    headline,
    summary_tables,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1100px; color: #1f2328; background: #ffffff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #d0d7de; }
p.meta, p.note { color: #57606a; font-size: 0.9em; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.3em 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kpis { display: flex; gap: 16px; flex-wrap: wrap; margin: 1em 0; }
.kpi { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 16px; background: #f6f8fa; }
.kpi b { display: block; font-size: 1.5em; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; }
figure { margin: 0; }
figure img { width: 100%; border: 1px solid #d0d7de; }
"""


def render_html(
    summary: Summary | None,
    pngs: dict[str, bytes],
    comparison: Comparison | None = None,
    *,
    title: str = "tau2-engine run report",
) -> str:
    """One HTML document that needs nothing but itself (no scripts, no external files)."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">generated {generated}</p>',
    ]
    if summary is not None:
        parts.append(f'<p class="meta">{escape(headline(summary))}</p>')
        parts.append(_kpis(summary))
    figures = [
        f'<figure><img alt="{escape(title_text)}" src="data:image/png;base64,'
        f'{base64.b64encode(pngs[name]).decode("ascii")}"></figure>'
        for name, title_text in PLOT_TITLES.items()
        if name in pngs
    ]
    if figures:
        parts.append(f'<h2>Plots</h2><div class="plots">{"".join(figures)}</div>')
    if summary is not None:
        parts += [_table(t) for t in summary_tables(summary)]
    if comparison is not None:
        parts.append("<h2>Comparison</h2>")
        parts.append(f'<p class="meta">{escape(comparison_headline(comparison))}</p>')
        parts.append(_table(comparison_table(comparison)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _kpis(summary: Summary) -> str:
    r = summary.reward
    mean = "-" if r.mean is None else f"{r.mean:.3f}"
    ci = "" if r.ci95_low is None or r.ci95_high is None else f" [{r.ci95_low:.3f}, {r.ci95_high:.3f}]"
    cards = [
        ("episodes counted", f"{summary.episodes.counted:,}"),
        ("excluded", f"{summary.episodes.excluded:,}"),
        ("mean reward (95% CI)", f"{mean}{ci}"),
    ]
    cards += [(f"pass^{k}", f"{v:.3f}") for k, v in list(summary.pass_hat_k.items())[:4]]
    return (
        '<div class="kpis">'
        + "".join(f'<div class="kpi">{escape(label)}<b>{escape(value)}</b></div>' for label, value in cards)
        + "</div>"
    )


def _table(data: TableData) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in data.columns)
    rows = []
    for row in data.rows:
        cells = "".join(
            f"<td>{escape(cell)}</td>" if i < data.text_columns else f'<td class="num">{escape(cell)}</td>'
            for i, cell in enumerate(row)
        )
        rows.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{escape(data.note)}</p>' if data.note else ""
    return (
        f"<h2>{escape(data.title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )
