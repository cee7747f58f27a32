"""The model registry: every trained model under ``CRM_PLATFORM_HOME/models/<task>/<version>/``
with its card, and one champion per task.

* ``<version>/model.joblib``: the fitted scikit-learn estimator (or the CLV model object);
* ``<version>/card.json``: training cutoffs, test cutoff, features, parameters, metrics, the hash
  of the training data, the gate decision once made;
* ``<version>/card.html``: the card as a page (metrics, plots) to open in a browser;
* ``champion.json``: the version the scoring assets use; ``promotions.jsonl``: every gate
  decision, promoted or refused, in order.

A training run on the same data with the same configuration as a registered version (its
``training_fingerprint``) learns nothing new: it registers no new version (``same_training``).

Files are written to a temporary name and renamed, so a crash never leaves half a model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import joblib


class RegistryError(LookupError):
    pass


def training_fingerprint(data_hash: str, *configs) -> str:
    """What a training run learnt from: the hash of its training data and every configuration
    that shaped it (dataclasses or plain values, as their repr)."""
    h = hashlib.sha256(data_hash.encode())
    for c in configs:
        h.update(repr(c).encode())
    return h.hexdigest()[:24]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _task(self, task: str) -> Path:
        return self.root / task

    def tasks(self) -> list[str]:
        """The tasks anything was ever registered or attempted for."""
        return sorted(d.name for d in self.root.iterdir() if d.is_dir()) if self.root.exists() else []

    def versions(self, task: str) -> list[str]:
        d = self._task(task)
        return sorted(p.name for p in d.iterdir() if p.is_dir() and (p / "card.json").exists()) if d.exists() else []

    def register(self, task: str, model, card: dict) -> str:
        """Store a trained model and its card as the next version of ``task``; return the version."""
        d = self._task(task)
        d.mkdir(parents=True, exist_ok=True)
        existing = [int(v[1:]) for v in self.versions(task)] + \
                   [int(p.name[1:]) for p in d.glob("v*.partial") if p.name[1:].split(".")[0].isdigit()]
        version = f"v{max(existing, default=0) + 1:04d}"
        tmp = d / f"{version}.partial"
        tmp.mkdir()
        joblib.dump(model, tmp / "model.joblib")
        card = {**card, "task": task, "version": version, "registered_at": _now()}
        _write(tmp / "card.json", json.dumps(card, indent=2, default=str))
        os.replace(tmp, d / version)
        return version

    def same_training(self, task: str, fingerprint: str) -> str | None:
        """The newest version trained on the same data with the same configuration, if any."""
        for version in reversed(self.versions(task)):
            if self.card(task, version).get("training_fingerprint") == fingerprint:
                return version
        return None

    def report_path(self, task: str, version: str) -> Path:
        """Where the card of a version is written as a page (``write_report``)."""
        return self._task(task) / version / "card.html"

    def write_report(self, task: str, version: str, html: str) -> Path:
        path = self.report_path(task, version)
        _write(path, html)
        return path

    def card(self, task: str, version: str) -> dict:
        path = self._task(task) / version / "card.json"
        if not path.exists():
            raise RegistryError(f"no model {task}/{version} in {self.root}")
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, task: str, version: str):
        """(model, card) of one version."""
        card = self.card(task, version)
        return joblib.load(self._task(task) / version / "model.joblib"), card

    def champion(self, task: str) -> str | None:
        path = self._task(task) / "champion.json"
        return json.loads(path.read_text(encoding="utf-8"))["version"] if path.exists() else None

    def record_decision(self, task: str, version: str, promoted: bool, reasons: list[str], metrics: dict) -> None:
        """Append a gate decision to the history and, if promoted, make ``version`` the champion."""
        if version not in self.versions(task):
            raise RegistryError(f"no model {task}/{version} in {self.root}")
        entry = {"at": _now(), "task": task, "version": version, "promoted": promoted,
                 "previous_champion": self.champion(task), "reasons": reasons, "metrics": metrics}
        with (self._task(task) / "promotions.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        if promoted:
            _write(self._task(task) / "champion.json", json.dumps(entry, indent=2, default=str))

    def decisions(self, task: str) -> list[dict]:
        path = self._task(task) / "promotions.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def record_attempt(self, task: str, version: str | None, status: str) -> None:
        """What the latest training run produced: a version, or why not (e.g. not enough data)."""
        d = self._task(task)
        d.mkdir(parents=True, exist_ok=True)
        _write(d / "last_attempt.json", json.dumps({"at": _now(), "version": version, "status": status}))

    def last_attempt(self, task: str) -> dict | None:
        path = self._task(task) / "last_attempt.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
