"""Pin the two environments `.ci/run` tests in.

    python .ci/lock.py [--latest]

Writes .ci/oldest.txt (the core, dev and aenv extras with .ci/oldest.in: the oldest Agents SDK
and openai the engine supports) and .ci/newest.txt (core and dev with .ci/newest.in, no aenv):
every package pinned, for CPython 3.11 on Linux x86_64, so CI installs the same versions each
run. `--latest` first moves .ci/newest.in to the newest releases of the packages it names.
"""

from __future__ import annotations

import sys

from coinstall import ROOT, compile_requirements, pinned, pip_index_options, uv_command

CI = ROOT / ".ci"
ENVIRONMENTS = {"oldest": ("dev", "aenv"), "newest": ("dev",)}


def main(argv: list[str]) -> int:
    uv = uv_command()
    indexes = pip_index_options()
    if argv == ["--latest"]:
        names = [line.split("==")[0] for line in (CI / "newest.in").read_text().split()]
        (CI / "newest.in").write_text("".join(pinned(uv, indexes, name) + "\n" for name in names))
    elif argv:
        sys.exit(__doc__)
    for name, extras in ENVIRONMENTS.items():
        options = [f"--extra={extra}" for extra in extras] + [f"--constraint={CI / f'{name}.in'}"]
        pins = compile_requirements(uv, indexes, [], str(ROOT / "pyproject.toml"), *options)
        header = f"# Written by `python .ci/lock.py`: pyproject.toml [{','.join(extras)}], .ci/{name}.in.\n"
        (CI / f"{name}.txt").write_text(header + pins)
        print(f".ci/{name}.txt: {sum(1 for line in pins.splitlines() if '==' in line)} packages pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
