"""Check that runs gave every episode the same reward: `python .ci/same_rewards.py A.jsonl B.jsonl ...`.

Episodes are matched by (domain, task id, sample); each file's `episode_end` events are read.
Exits 1, naming the first differences, unless every file has the same episodes and rewards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rewards(path: Path) -> dict[tuple[str, str, int], tuple[str, float]]:
    found = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "episode_end":
            found[(event["domain"], event["task_id"], event["sample"])] = (event["status"], event["reward"])
    return found


def main(paths: list[str]) -> int:
    if len(paths) < 2:
        sys.exit(__doc__)
    runs = {path: rewards(Path(path)) for path in paths}
    first_path, first = next(iter(runs.items()))
    failed = False
    for path, run in runs.items():
        differing = sorted(key for key in first.keys() | run.keys() if first.get(key) != run.get(key))
        if differing:
            failed = True
            shown = ", ".join(f"{k}: {first.get(k)} vs {run.get(k)}" for k in differing[:5])
            print(f"{path} differs from {first_path} in {len(differing)} episodes: {shown}")
    mean = sum(reward for _, reward in first.values()) / max(len(first), 1)
    if not failed:
        print(f"same rewards in {len(runs)} runs: {len(first)} episodes, mean reward {mean:.4f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
