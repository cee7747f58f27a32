"""The days of the platform: which days the daily partitions span, and where a day ends.

Time follows the data, never the wall clock: the partitions end on the newest day with data, which
each core refresh records in a small file (``record_data_days``), and everything point-in-time
reads what was known before the end of its day (``day_end``).
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path


def partitions_start(configured: date | None, first_day_file: Path) -> date:
    """The first day of the daily partitions: the configured date, else the first day the timeline
    holds an event for (``record_data_days``, written by each timeline build), else, before any
    data, two years before today. Read from a small file, not the warehouse: the code location
    loads while a run may hold the warehouse's write lock."""
    if configured is not None:
        return configured
    return _read_day(first_day_file) or date.today() - timedelta(days=730)


def partitions_end(last_day_file: Path) -> date:
    """The last day of the daily partitions: the newest day the timeline holds a known event for
    (never after today), so no partition exists for a day without data and nothing - a schedule,
    the automation, a backfill of "everything" - computes or delivers one. Before any data: today.
    Like the start it is read when the code location loads; a new data day becomes a partition
    when the code location reloads (``dagster-daemon`` does every minute; ``dagster dev``: Reload)."""
    return newest_data_day(last_day_file) or date.today()


def newest_data_day(last_day_file: Path) -> date | None:
    """The newest day with data as the last core refresh recorded it (never after today); None
    before any event."""
    last = _read_day(last_day_file)
    return min(last, date.today()) if last else None


# the newest day with data: the day the latest known event became known (snapshots read known_at)
LAST_DATA_DAY_SQL = "SELECT max(known_at)::DATE FROM core.customer_events"


def record_data_days(con, first_day_file: Path, last_day_file: Path) -> tuple[date | None, date | None]:
    """Write the timeline's first event day and its newest data day where ``partitions_start``
    and ``partitions_end`` read them; returns both (None before any event)."""
    first, last = con.execute(f"SELECT min(event_at)::DATE, ({LAST_DATA_DAY_SQL}) "
                              "FROM core.customer_events").fetchall()[0]
    for day, path in ((first, first_day_file), (last, last_day_file)):
        if day is not None and _read_day(path) != day:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(day.isoformat() + "\n")
    return first, last


def _read_day(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def day_end(day: date) -> str:
    """SQL for the end of a day (the next midnight): everything point-in-time reads ``< day_end``."""
    return f"(DATE '{day.isoformat()}' + INTERVAL 1 DAY)"
