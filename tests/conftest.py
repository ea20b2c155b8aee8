"""Suite-wide reporting: tests that need the shared BCCD copy say so in one line when it is missing."""

from __future__ import annotations

import pytest

BCCD_SKIP = "BCCD data set not available"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and BCCD_SKIP in str(report.longrepr[2])
    ]
    if skipped:
        terminalreporter.write_line(
            f"SKIPPED {len(skipped)} tests on real data: ../shared/data/bccd/BCCD not found next to the checkout",
            yellow=True,
            bold=True,
        )
