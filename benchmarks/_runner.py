"""What every benchmark script shares: one stage per process (so peak memory is that stage's
own) and the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"


def run_stage(script: str, name: str, customers: int, extra: list[str] | None = None) -> dict:
    """Run ``script --stage name customers`` in a fresh interpreter; its last stdout line is the
    stage's JSON result. A failing stage stops the benchmark with its error."""
    res = subprocess.run([sys.executable, script, "--stage", name, str(customers), *(extra or [])],
                         capture_output=True, text=True)
    if res.returncode:
        print(res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name} failed at {customers}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def append_results(lines: list[str]) -> None:
    with RESULTS.open("a") as fh:
        fh.write("\n".join(lines) + "\n")


def machine_header(title: str, command: str) -> list[str]:
    """The heading of a results section: what, when, on which machine, by which command."""
    gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return [f"\n## {title} - {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC - this machine: {os.cpu_count()} cores, "
            f"{gib} GiB, Python {platform.python_version()}", f"command: `.venv/bin/python {command}`"]
