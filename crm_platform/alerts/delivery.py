"""Delivering alerts exactly once through pluggable sinks.

Every alert carries a deterministic ``alert_id`` (the same alert computed again, by a rerun or a
backfill, gets the same id). The outbox ledger under ``CRM_PLATFORM_HOME/outbox/ledger.jsonl``
records each (alert, sink) pair once it was delivered; a later delivery sends each sink only what
it has not acknowledged yet. A sink that fails (a webhook that stays down) is retried with
back-off, reported, and left out of the ledger, so the next run sends it again: nothing is lost
and nothing is sent twice.

Sinks: a JSON-lines file, a CSV for CRM import (cells that a spreadsheet would run as a formula
are neutralized), an HTTP webhook (JSON POST). Each receives only the fields its settings name
(``fields``/``columns``): by default the alert and the customer id, never contact details unless a
sink that must reach the person asks for them.

A webhook sends only to ``http``/``https`` URLs whose host resolves to public addresses (unless
the sink sets ``allow_private_targets: true``), follows no redirect, retries only network errors,
5xx, 408 and 429, and never puts the URL's credentials or query into a message.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from crm_platform.core.spreadsheet import neutralize


def alert_id(kind: str, subject: str, key: str, day: str) -> str:
    """The id of an alert: the same kind, subject (customer or KPI), key (e.g. the model version
    or the stage) and day always give the same id."""
    return hashlib.sha256("|".join((kind, subject, key, day)).encode()).hexdigest()[:24]


class Sink:
    name: str

    def send(self, alerts: list[dict]) -> set[str]:
        """Deliver ``alerts``; return the ids delivered."""
        raise NotImplementedError


# what a sink may be given of an alert: the alert itself, and the contact details of the golden
# record for a sink that must reach the person (only if its settings name them)
ALERT_FIELDS = ("alert_id", "alert_date", "kind", "customer_id", "subject", "reason", "model_version")
CONTACT_FIELDS = ("email", "first_name", "last_name", "phone")
DEFAULT_FIELDS = ALERT_FIELDS


def log_over_runs_sql(new: str, table: str = "alerts.delivery_log") -> str:
    """A day's delivery-log rows (``new``: this run's) merged with what earlier runs of the same day
    recorded in ``table``: ``sent`` counts what any run of the day sent, ``already_delivered`` only
    what runs of other days had sent, so a rerun that sends nothing leaves the day's log as it was
    (instead of turning "sent 3" into "already delivered 3")."""
    return f"""SELECT n.alert_date, n.sink, n.alerts, n.sent + coalesce(o.sent, 0) AS sent,
               greatest(n.already_delivered - coalesce(o.sent, 0), 0) AS already_delivered, n.failed, n.note
        FROM {new} n LEFT JOIN {table} o ON o.alert_date = n.alert_date AND o.sink = n.sink
          AND o.note IS NOT DISTINCT FROM n.note"""


def payload(alert: dict, fields: tuple[str, ...]) -> dict:
    """The part of an alert a sink receives."""
    return {f: alert.get(f) for f in fields}


@dataclass
class JsonlSink(Sink):
    path: Path
    name: str = "jsonl"
    fields: tuple[str, ...] = DEFAULT_FIELDS

    def send(self, alerts: list[dict]) -> set[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            for a in alerts:
                f.write(json.dumps(payload(a, self.fields), default=str, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return {a["alert_id"] for a in alerts}


@dataclass
class CsvSink(Sink):
    path: Path
    columns: tuple[str, ...]
    name: str = "csv"

    @property
    def fields(self) -> tuple[str, ...]:
        return self.columns

    def send(self, alerts: list[dict]) -> set[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.columns)
            for a in alerts:
                w.writerow([neutralize(a.get(c)) for c in self.columns])
        return {a["alert_id"] for a in alerts}


class WebhookConfigError(ValueError):
    """A webhook URL the sink will not send to; the message never holds credentials or a query."""


def redact(url: str) -> str:
    """The URL without user-info, query and fragment (``?api_key=…``): what messages may show."""
    try:
        u = urllib.parse.urlsplit(url)
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{u.scheme}://{host}{port}{u.path}" + ("?…" if u.query else "")


def check_target(url: str, allow_private: bool = False) -> None:
    """Refuse a webhook URL that is not ``http``/``https``, has no host, or (unless
    ``allow_private``) resolves to a loopback, link-local, private, reserved, multicast or
    unspecified address - an alert delivery must not reach into the platform's own network
    (cloud metadata at 169.254.169.254, a database on localhost)."""
    try:
        u = urllib.parse.urlsplit(url)
        host, port = u.hostname, u.port
    except ValueError as e:
        raise WebhookConfigError(f"webhook URL {redact(url)} cannot be read: {e}") from None
    if u.scheme not in ("http", "https"):
        raise WebhookConfigError(f"webhook URL {redact(url)}: only http and https are sent to, not {u.scheme!r}")
    if not host:
        raise WebhookConfigError(f"webhook URL {redact(url)} names no host")
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)}
    except OSError as e:
        raise WebhookConfigError(f"webhook host of {redact(url)} does not resolve: {e}") from None
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise WebhookConfigError(
                f"webhook URL {redact(url)} resolves to {ip}, a loopback, link-local, private or reserved address: "
                "not sent (set allow_private_targets: true on the sink to allow an internal receiver)")


def _request_parts(url: str) -> tuple[str, dict[str, str]]:
    """The URL without user-info, and the headers: user-info becomes HTTP basic authentication
    (urllib would read it as part of the host)."""
    u = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json"}
    if u.username is None:
        return url, headers
    creds = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
    headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    netloc = u.hostname if ":" not in (u.hostname or "") else f"[{u.hostname}]"
    netloc += f":{u.port}" if u.port else ""
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)), headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed: urllib turns a redirected POST into a GET without the body, and
    the receiver's 2xx to that would count as delivered."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# 4xx answers that may pass (timeout, rate limit); any other 4xx is the sink's configuration
RETRIED_4XX = (408, 429)


@dataclass
class WebhookSink(Sink):
    url: str
    retries: int = 3
    backoff_seconds: float = 0.5
    timeout_seconds: float = 5.0
    batch_size: int = 100
    name: str = "webhook"
    errors: list[str] = field(default_factory=list)
    fields: tuple[str, ...] = DEFAULT_FIELDS
    # send to loopback / private / link-local addresses (an internal receiver); off by default
    allow_private: bool = False

    def send(self, alerts: list[dict]) -> set[str]:
        """POST batches as JSON arrays; a batch counts as delivered on a 2xx answer. Each batch is
        tried ``1 + retries`` times with doubling back-off on network errors, 5xx, 408 and 429;
        a redirect or another 4xx is a configuration error, reported at once. The target is
        checked before each batch (a name may resolve elsewhere later). What fails is reported in
        ``errors`` (the URL without credentials or query) and left undelivered."""
        done: set[str] = set()
        target = redact(self.url)
        opener = urllib.request.build_opener(_NoRedirect)
        for i in range(0, len(alerts), self.batch_size):
            batch = alerts[i:i + self.batch_size]
            try:
                check_target(self.url, self.allow_private)
            except WebhookConfigError as e:
                self.errors.append(f"{len(batch)} alert(s) not sent: {e}")
                continue
            body = json.dumps([payload(a, self.fields) for a in batch], default=str).encode()
            url, headers = _request_parts(self.url)
            for attempt in range(self.retries + 1):
                try:
                    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
                    with opener.open(req, timeout=self.timeout_seconds) as resp:
                        if 200 <= resp.status < 300:
                            done |= {a["alert_id"] for a in batch}
                            break
                        raise urllib.error.HTTPError(self.url, resp.status, "not a 2xx answer", resp.headers, None)
                except urllib.error.HTTPError as e:
                    if 300 <= e.code < 400:
                        self.errors.append(f"{len(batch)} alert(s) to {target}: redirected ({e.code}), not followed - "
                                           "a redirected POST loses its body; configure the final URL")
                        break
                    if 400 <= e.code < 500 and e.code not in RETRIED_4XX:
                        self.errors.append(f"{len(batch)} alert(s) to {target}: HTTP {e.code} ({e.reason}), a "
                                           "configuration error (not retried): check the URL and its credentials")
                        break
                    if attempt == self.retries:
                        self.errors.append(f"{len(batch)} alert(s) to {target}: HTTP {e.code} ({e.reason}) "
                                           f"after {self.retries + 1} attempts")
                        break
                except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
                    if attempt == self.retries:
                        reason = str(getattr(e, "reason", e))
                        for secret in {self.url, url}:
                            reason = reason.replace(secret, target)
                        self.errors.append(f"{len(batch)} alert(s) to {target}: {type(e).__name__}: {reason} "
                                           f"after {self.retries + 1} attempts")
                        break
                time.sleep(self.backoff_seconds * 2 ** attempt)
        return done


@dataclass
class DeliveryReport:
    sent: dict[str, int]          # sink -> alerts delivered now
    already: dict[str, int]       # sink -> alerts the ledger says were delivered before
    failed: dict[str, int]        # sink -> alerts not delivered (sent again next time)
    errors: list[str]


class Outbox:
    """The ledger of what each sink has acknowledged."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.ledger = self.root / "ledger.jsonl"

    def by_sink(self) -> dict[str, set[str]]:
        """The alert ids each sink has acknowledged."""
        out: dict[str, set[str]] = {}
        if self.ledger.exists():
            for line in self.ledger.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    out.setdefault(entry["sink"], set()).add(entry["alert_id"])
        return out

    def delivered(self, sink: str) -> set[str]:
        return self.by_sink().get(sink, set())

    def deliver(self, alerts: list[dict], sinks: list[Sink]) -> DeliveryReport:
        """Send every sink the alerts it has not acknowledged; record what it acknowledged."""
        ids = [a["alert_id"] for a in alerts]
        if len(set(ids)) != len(ids):
            raise ValueError("alert ids are not unique within one delivery")
        self.root.mkdir(parents=True, exist_ok=True)
        sent, already, failed, errors = {}, {}, {}, []
        for sink in sinks:
            done_before = self.delivered(sink.name)
            todo = [a for a in alerts if a["alert_id"] not in done_before]
            done = sink.send(todo) if todo else set()
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            with self.ledger.open("a", encoding="utf-8") as f:
                for a in todo:
                    if a["alert_id"] in done:
                        f.write(json.dumps({"alert_id": a["alert_id"], "sink": sink.name, "at": now}) + "\n")
            sent[sink.name] = len(done)
            already[sink.name] = len(alerts) - len(todo)
            failed[sink.name] = len(todo) - len(done)
            errors += getattr(sink, "errors", [])
        return DeliveryReport(sent, already, failed, errors)


def sink_fields(spec: dict) -> tuple[str, ...]:
    """The fields a sink's settings give it (``fields``, or ``columns`` for a CSV); contact details
    only when named. An unknown field is an error naming the sink."""
    fields = tuple(spec.get("fields") or spec.get("columns") or DEFAULT_FIELDS)
    unknown = [f for f in fields if f not in ALERT_FIELDS + CONTACT_FIELDS]
    if unknown:
        raise ValueError(f"sink {spec.get('name')}: unknown field(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(ALERT_FIELDS + CONTACT_FIELDS)}")
    return fields


def build_sinks(specs, root: Path, env=None) -> tuple[list[Sink], list[str]]:
    """The sinks of the settings (``sinks:`` in alerts.yaml), files under ``root``; a webhook whose
    ``url_env`` variable is unset is left out, and the second list says so."""
    env = os.environ if env is None else env
    sinks, skipped = [], []
    for spec in specs:
        kind, name = spec["type"], spec["name"]
        fields = sink_fields(spec)
        if kind == "jsonl":
            sinks.append(JsonlSink(root / spec["path"], name=name, fields=fields))
        elif kind == "csv":
            sinks.append(CsvSink(root / spec["path"], fields, name=name))
        elif kind == "webhook":
            url = spec.get("url") or env.get(spec.get("url_env", ""), "")
            if not url:
                skipped.append(f"{name}: no URL (set {spec.get('url_env', 'url')})")
                continue
            allow_private = bool(spec.get("allow_private_targets", False))
            try:
                check_target(url, allow_private=True)      # the scheme and host now; the address at each send
            except WebhookConfigError as e:
                raise ValueError(f"sink {name}: {e}") from None
            sinks.append(WebhookSink(url, retries=int(spec.get("retries", 3)),
                                     backoff_seconds=float(spec.get("backoff_seconds", 0.5)),
                                     timeout_seconds=float(spec.get("timeout_seconds", 5)), name=name,
                                     fields=fields, allow_private=allow_private))
        else:
            raise ValueError(f"sink {name}: unknown type {kind!r}")
    return sinks, skipped
