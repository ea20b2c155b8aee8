"""Fresh numbered output folders, so that nothing a user made is overwritten."""

from __future__ import annotations

from pathlib import Path

from ssdcli.errors import UsageError


def fresh_run_dir(base: str | Path, prefix: str = "") -> Path:
    """Create and return ``base/<prefix><n>`` for the smallest n >= 1 not yet taken (safe against races)."""
    root = Path(base)
    if root.exists() and not root.is_dir():
        raise UsageError("exists and is not a folder", path=root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [p.name[len(prefix):] for p in root.iterdir() if p.name.startswith(prefix)]
    number = max((int(t) for t in taken if t.isdigit()), default=0) + 1
    while True:
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
