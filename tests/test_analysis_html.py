"""--html: one self-contained file, rendered for real by headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from engine.analysis.cli import main_analyze
from tests.test_analysis_support import Call, Episode, Retry, write_events

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    events = tmp / "events.jsonl"
    episodes = [
        Episode(
            task_id=f"task_{t}",
            sample=s,
            reward=1.0 if (t * 7 + s * 3) % 5 > 1 else 0.0,
            calls=(
                Call(name="get_users", latency_s=0.005 * (1 + s)),
                Call(name="create_task", latency_s=0.02 * (1 + t % 3), error=s == 3),
            ),
            start_s=0.2 * (t * 4 + s) - 0.05 * t * s,
            duration_s=1.0 + 0.3 * s,
            retries=(Retry(error_type="APIConnectionError"),) if t == 2 else (),
        )
        for t in range(8)
        for s in range(4)
    ]
    episodes.append(Episode(task_id="task_0", sample=4, status="infra_error", reward=0.0))
    write_events(events, episodes)
    html = tmp / "report.html"
    assert main_analyze([str(events), "--html", str(html), "--json"]) == 0
    return html


def test_report_is_self_contained_with_inline_plots(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 6
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(src|href)=["']?(https?:|file:|//)""", text)
    assert "<script" not in text
    for title in ("Episodes by status", "Tool usage", "Failure taxonomy", "pass^1"):
        assert title in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_headless_chromium_renders_a_non_blank_page(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", "--window-size=1200,2400", report.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 50_000
    with Image.open(shot) as image:
        assert image.size == (1200, 2400)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50
        # The inlined plots decoded and drew: the histogram's bar blue and the heatmap's
        # reward-1 green cover many pixels; a broken image or blank page has neither.
        counts = dict((colour, n) for n, colour in colours)
        assert _near(counts, HISTOGRAM_BLUE) > 1000
        assert _near(counts, HEATMAP_GREEN) > 1000


HISTOGRAM_BLUE = (0x4C, 0x72, 0xB0)
HEATMAP_GREEN = (0, 104, 55)


def _near(counts: dict[tuple[int, int, int], int], target: tuple[int, int, int]) -> int:
    return sum(
        n
        for colour, n in counts.items()
        if all(abs(a - b) <= 12 for a, b in zip(colour, target, strict=True))
    )
