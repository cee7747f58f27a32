"""What every benchmark script shares: one stage per process (so peak memory is that stage's
own) and the results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"


def run_stage(script: str, name: str, customers: int) -> dict:
    """Run ``script --stage name customers`` in a fresh interpreter; its last stdout line is the
    stage's JSON result. A failing stage stops the benchmark with its error."""
    res = subprocess.run([sys.executable, script, "--stage", name, str(customers)], capture_output=True, text=True)
    if res.returncode:
        print(res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name} failed at {customers}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def append_results(lines: list[str]) -> None:
    with RESULTS.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
