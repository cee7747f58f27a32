"""The fast lane (``make test-fast``): tests of the domain alone, without Dagster.

When only this folder runs, the session fails if anything it imported pulled in Dagster, so the
lane stays what it says (the import rules themselves: test_architecture.py)."""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    items = getattr(session, "items", [])
    only_unit = items and all(Path(str(item.fspath)).resolve().is_relative_to(HERE) for item in items)
    if only_unit and "dagster" in sys.modules:
        session.config.get_terminal_writer().line(
            "the unit lane imported dagster: a test of tests/unit reaches the Dagster side", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# fixtures that run the whole platform first (in a subprocess): a test using one belongs to the full lane
WHOLE_RUNS = {"production_run", "tiny_run"}


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if WHOLE_RUNS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
