"""The unique-key check of an incremental evaluation against the check over every key, on a
warehouse after a daily refresh (read-only):

    .venv/bin/python benchmarks/unique_check.py benchmarks/_work/1000000-daily/warehouse.duckdb

The rows of the newest build of core.customer_events are the changed ones; each query runs twice.
"""

import sys
import time

import duckdb


def main(path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    builds = con.execute("SELECT _built_at, count(*) FROM core.customer_events GROUP BY 1 ORDER BY 1").fetchall()
    print(f"{sum(n for _, n in builds):,} rows, {builds[-1][1]:,} of them built by the newest build")
    since = builds[-2][0]
    changed = (f"(SELECT t.* FROM core.customer_events t SEMI JOIN (SELECT DISTINCT event_id FROM "
               f"core.customer_events WHERE _built_at > TIMESTAMP '{since}') k "
               f"ON t.event_id IS NOT DISTINCT FROM k.event_id)")
    queries = {"every key": "core.customer_events", "keys of the changed rows": changed}
    for _ in range(2):
        for name, source in queries.items():
            t = time.time()
            dupes = con.execute(f"SELECT event_id, count(*) AS n FROM {source} GROUP BY ALL "
                                "HAVING count(*) > 1 ORDER BY n DESC LIMIT 20").fetchall()
            print(f"{name}: {time.time() - t:.1f} s, {len(dupes)} duplicates", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
