"""``tau2-engine analyze``: argument parsing and the one entry point, :func:`main_analyze`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from engine.analysis.compare import Comparison, compare_runs
from engine.analysis.errors import InputError
from engine.analysis.load import EventStore, load_events
from engine.analysis.metrics import Summary, summarize
from engine.analysis.serialize import to_json

PROG = "tau2-engine analyze"
_REPORT_WIDTH = 160


class _Exit(Exception):
    """argparse wanted to exit (``--help``); carries the status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``tau2-engine analyze``."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Summarize events JSON Lines files: statuses, mean reward with a 95% CI, "
            "pass^k, per-domain, per-task and per-tool tables, latency, tokens, failures, "
            "retries and run throughput."
        ),
    )
    parser.add_argument(
        "events",
        nargs="*",
        metavar="EVENTS",
        help="events .jsonl files or globs (several runs or resumes of one run)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--html",
        type=Path,
        metavar="REPORT.html",
        help="write a self-contained HTML report with plots",
    )
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write the plots as PNG files")
    parser.add_argument(
        "--export-tau2",
        type=Path,
        metavar="RESULTS.json",
        help="write the run in tau2's Results format",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="per-task reward deltas of run B against run A (files or globs); refused when "
        "their comparability stamps differ",
    )
    parser.add_argument(
        "--allow-incomparable",
        action="store_true",
        help="--compare runs whose stamps differ anyway (the report flags it)",
    )
    return parser


def main_analyze(argv: list[str]) -> int:
    """Run ``tau2-engine analyze`` with ``argv`` (without the program and subcommand).

    Returns 0 on success and 2 on bad input, after one line on stderr naming the bad value.
    """
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except _Exit as exc:
        return exc.status
    except InputError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2


def _check_output(path: Path | None, flag: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a directory; expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {str(path)!r}: directory {str(parent)!r} does not exist")


def _run(args: argparse.Namespace) -> int:
    if not args.events and not args.compare:
        raise InputError("no events files given (pass EVENTS.jsonl or --compare A B)")
    _check_output(args.html, "--html")
    _check_output(args.export_tau2, "--export-tau2")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise InputError(f"--plots {str(args.plots)!r} is not a directory")
    needs_events = [
        flag
        for flag, value in (("--plots", args.plots), ("--export-tau2", args.export_tau2))
        if value is not None
    ]
    if needs_events and not args.events:
        raise InputError(f"{needs_events[0]} needs EVENTS files, not only --compare")

    store: EventStore | None = None
    summary: Summary | None = None
    comparison: Comparison | None = None
    notes: list[str] = []
    if args.events:
        store = load_events(args.events)
        summary = summarize(store)
    if args.compare:
        side_a, side_b = (summarize(load_events([pattern])) for pattern in args.compare)
        comparison = compare_runs(side_a, side_b)
        if not comparison.comparable and not args.allow_incomparable:
            raise InputError(
                "runs are not comparable, their stamps differ: "
                + " | ".join(comparison.stamp_differences)
                + " (pass --allow-incomparable to compare anyway)"
            )

    if store is not None and args.export_tau2 is not None:
        from engine.analysis.export import export_tau2

        exported = export_tau2(store, args.export_tau2)
        notes.append(
            f"wrote {exported.path} (tau2 Results: {exported.simulations} simulations, "
            f"{exported.tasks} tasks, domain {exported.domain})"
        )
    if args.html is not None or args.plots is not None:
        notes += _write_visuals(args, store, summary, comparison)

    if args.json:
        sys.stdout.write(to_json(summary, comparison).decode() + "\n")
    else:
        from rich.console import Console

        from engine.analysis.report import print_report

        width = None if sys.stdout.isatty() else _REPORT_WIDTH
        print_report(Console(width=width), summary, comparison)
    for note in notes:
        print(note, file=sys.stderr if args.json else sys.stdout)
    return 0


def _write_visuals(
    args: argparse.Namespace,
    store: EventStore | None,
    summary: Summary | None,
    comparison: Comparison | None,
) -> list[str]:
    from engine.analysis.html_report import render_html
    from engine.analysis.plots import render_plots, write_plots
    from engine.analysis.series import build_series

    pngs: dict[str, bytes] = {}
    if store is not None and summary is not None:
        pngs = render_plots(summary, build_series(store))
    notes = []
    if args.plots is not None:
        written = write_plots(args.plots, pngs)
        notes.append(f"wrote {len(written)} plots to {args.plots}")
    if args.html is not None:
        try:
            args.html.write_text(render_html(summary, pngs, comparison), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write --html file {str(args.html)!r}: {exc}") from exc
        notes.append(f"wrote {args.html}")
    return notes
