"""The terminal summary: the tables of :mod:`engine.analysis.tables` rendered with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.analysis.compare import Comparison
from engine.analysis.metrics import Summary
from engine.analysis.tables import (
    TableData,
    comparison_headline,
    comparison_table,
    headline,
    summary_tables,
)


def rich_table(data: TableData) -> Table:
    """A rich table with text columns left-aligned and numbers right-aligned."""
    table = Table(title=data.title, title_justify="left", title_style="bold")
    for index, column in enumerate(data.columns):
        table.add_column(column, justify="left" if index < data.text_columns else "right")
    for row in data.rows:
        table.add_row(*row)
    return table


def print_report(console: Console, summary: Summary | None, comparison: Comparison | None = None) -> None:
    """Print the summary and/or the comparison."""
    blocks: list[tuple[Text | None, TableData]] = []
    if summary is not None:
        console.print(Text(headline(summary)))
        console.print()
        blocks += [(None, t) for t in summary_tables(summary)]
    if comparison is not None:
        style = "" if comparison.comparable else "bold red"
        blocks.append((Text(comparison_headline(comparison), style=style), comparison_table(comparison)))
    for lead, data in blocks:
        if lead is not None:
            console.print(lead)
        console.print(rich_table(data))
        if data.note:
            console.print(Text(data.note, style="dim"))
        console.print()
