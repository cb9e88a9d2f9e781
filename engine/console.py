"""What a person sees of a run: a progress bar on a terminal and the closing summary."""

from __future__ import annotations

from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.results import EpisodeResult, RunSummary


class RunProgress:
    """A rich progress bar, shown only when the stream is a terminal."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.console = Console(file=stream)
        self.enabled = self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("reward {task.fields[reward]:.3f}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("run", total=total, reward=0.0)
        self._rewards = 0.0
        self._done = 0

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self._progress.stop()

    def advance(self, result: EpisodeResult) -> None:
        self._done += 1
        self._rewards += result.reward
        if self.enabled:
            self._progress.update(self._task, advance=1, reward=self._rewards / self._done)


def summary_table(summary: RunSummary, *, title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("episodes", str(summary.episodes))
    table.add_row("mean reward", f"{summary.mean_reward:.4f}")
    for k, value in summary.pass_hat_k.items():
        table.add_row(f"pass^{k}", f"{value:.4f}")
    for status, count in sorted(summary.statuses.items()):
        table.add_row(f"status {status}", str(count))
    table.add_row("wall time (s)", f"{summary.duration_s:.2f}")
    table.add_row("episodes/s", f"{summary.episodes_per_s:.2f}")
    return table
