"""Time how long the ``ssd`` command takes to answer before any work: ``--version``, ``--help`` and a
subcommand's help, beside ``python -c "import torch"`` (what the CLI would pay on every call if its top level
imported torch). Target: ``ssd --version`` and ``ssd --help`` under 0.5 s (median).

    .venv/bin/python benchmarks/startup.py               # 15 runs each
    .venv/bin/python benchmarks/startup.py --runs 5

Each figure is the median wall-clock time of ``--runs`` fresh processes, measured in one run of this script.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5


def _ssd() -> list[str]:
    beside = Path(sys.executable).with_name("ssd")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ssd")
    return [found] if found else [sys.executable, "-m", "ssdcli"]


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ssd = _ssd()
    cases = {
        "ssd --version": [*ssd, "--version"],
        "ssd --help": [*ssd, "--help"],
        "ssd eval --help": [*ssd, "eval", "--help"],
        "ssd train --help (lists the architectures)": [*ssd, "train", "--help"],
        'python -c "import torch" (reference)': [sys.executable, "-c", "import torch"],
    }
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {args.runs} runs each")
    print(f"{'command':<45} {'median s':>9}  target")
    over = False
    for name, command in cases.items():
        seconds = median_seconds(command, args.runs)
        targeted = name in ("ssd --version", "ssd --help")
        verdict = ("ok" if seconds < TARGET_S else "OVER") if targeted else ""
        over |= targeted and seconds >= TARGET_S
        print(f"{name:<45} {seconds:>9.3f}  {f'< {TARGET_S}' if targeted else '':>6} {verdict}")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
