"""Progress of a run on the terminal: each step as it starts and ends, with elapsed times.

``Progress`` listens to the events of one run (``DagsterInstance.add_event_listener``) and writes
to stderr, so the summary on stdout stays clean for a pipe. Where stderr is a terminal, a tqdm
bar at the bottom shows the steps done, the running step and the elapsed time (refreshed every
second while a long step runs); elsewhere (a log file, CI) one plain line per event.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def step_label(step_key: str) -> str:
    """An asset's step as its key (``staging__contacts`` -> ``staging/contacts``), a Pandera
    check step as ``check staging/contacts: pandera_Contacts``."""
    asset, _, check = step_key.replace("__", "/").partition("_pandera_")
    return f"check {asset}: pandera_{check}" if check else asset


class Progress:
    """Writes what one run does while it runs. ``on_event`` takes Dagster's event log entries."""

    def __init__(self, job: str, steps: int, stream: TextIO | None = None, interactive: bool | None = None,
                 started: float | None = None):
        self.job, self.total, self.stream = job, steps, stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.t0 = time.monotonic()
        self.session_t0 = started or self.t0
        self.started: dict[str, float] = {}
        self.done = 0
        self.failed: list[str] = []
        self._bar = None
        self._stop = threading.Event()
        if self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=steps, desc=job, unit="step", file=self.stream, leave=False,
                             bar_format="{desc} {bar} {n_fmt}/{total_fmt} steps | {elapsed} | {postfix}")
            threading.Thread(target=self._tick, daemon=True).start()
        self._say(f"> {job}: {steps} steps")

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    def _say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _running(self) -> str:
        return ", ".join(step_label(k) for k in self.started)[:80]

    def on_event(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        kind, key = event.event_type_value, event.step_key
        now = time.monotonic()
        if kind == "STEP_START" and key:
            self.started[key] = now
            if self._bar is not None:
                self._bar.set_postfix_str(self._running())
            else:
                self._say(f"  [{self.done + 1:>3}/{self.total}] {step_label(key)} ...")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED") and key:
            took = now - self.started.pop(key, now)
            self.done += 1
            mark = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}[kind]
            if kind == "STEP_FAILURE":
                self.failed.append(key)
            self._say(f"  [{self.done:>3}/{self.total}] {step_label(key)}: {mark} in {clock(took)} "
                      f"(elapsed {clock(now - self.session_t0)})")
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix_str(self._running())

    def finish(self, success: bool) -> None:
        """The run's last line: how long it took, how many steps ran, which failed."""
        self.close()
        self._say(f"< {self.job}: {'finished' if success else 'FAILED'} in {clock(time.monotonic() - self.t0)}, "
                  f"{self.done}/{self.total} steps"
                  + (f", failed: {', '.join(step_label(k) for k in self.failed)}" if self.failed else ""))

    def close(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
