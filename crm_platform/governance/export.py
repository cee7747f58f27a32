"""Data export (GDPR Art. 15 and 20): everything held about one person, as one JSON document.

``CRM_PLATFORM_HOME/exports/<request id>.json`` holds, for the person found as in an erasure
(crm_platform.governance.subject): the golden record of each of their customer ids with the
provenance of every field, their consent per channel, every source record as delivered (all file
versions, with file and line, quarantined rows too), the standardized records identity resolution
used, the id history, the timeline of events, feature snapshots, segments, scores with the model
version and that model's card, and the alerts raised (with the sinks each was delivered to).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from crm_platform.core import warehouse
from crm_platform.alerts.delivery import Outbox
from crm_platform.core import audit
from crm_platform.governance.scrub import token_regex
from crm_platform.governance.subject import AmbiguousSubject, _q, register_hashes, resolve
from crm_platform.ingest.erased import match_sql
from crm_platform.ml.registry import Registry, RegistryError
from crm_platform.core.settings import Paths
from crm_platform.ingest.sources import SourceConfig

FORMAT = "crm_platform subject export v1"
# per-customer tables in the export: section -> (table, order)
CUSTOMER_TABLES = {
    "events": ("core.customer_events", "event_at, event_id"),
    "features": ("features.customer_features", "snapshot_date"),
    "lifecycle_and_rfm_segments": ("marts.customer_segments", "snapshot_date"),
    "lifecycle_transitions": ("marts.lifecycle_transitions", "transition_at"),
    "behaviour_clusters": ("marts.behaviour_clusters", "snapshot_date"),
    "lookalike_audiences": ("marts.lookalikes", "snapshot_date, seed_segment"),
    "order_attribution": ("marts.channel_attribution", "order_date, order_id, rule, channel"),
}
SCORE_TABLES = {"churn": "ml.churn_scores", "clv": "ml.clv_scores", "next_best_offer": "ml.next_best_offer",
                "lead_scoring": "ml.lead_scores"}


def exports_dir(paths: Paths) -> Path:
    return paths.home / "exports"


def _rows(con, sql: str, params=None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def build(con, paths: Paths, cfg: SourceConfig, identifier_type: str, identifier: str, request_id: str, *,
          customer_id: str | None = None, all_matching: bool = False) -> dict:
    """The export document (raises SubjectNotFound when nothing is held, AmbiguousSubject when the
    e-mail address is held by several customers and the request does not say which)."""
    s = resolve(con, cfg, identifier_type, identifier, customer_id=customer_id, all_matching=all_matching)
    have = lambda t: warehouse.table_exists(con, t)  # noqa: E731
    ids = _q(s.customer_ids)
    salt = paths.hash_salt()
    register_hashes(con, "_export_hashes", s, salt)
    doc: dict = {"format": FORMAT, "request_id": request_id,
                 "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "requested_for": {"identifier_type": s.identifier_type, "identifier": s.identifier},
                 "customers": []}
    for cid in sorted(s.customer_ids):
        entry = {"customer_id": cid}
        if have("core.customers"):
            golden = _rows(con, "SELECT * FROM core.customers WHERE customer_id = ?", [cid])
            entry["golden_record"] = golden[0] if golden else None
            entry["consent"] = {ch: (golden[0][f"consent_{ch}"] if golden else None) for ch in ("email", "phone")}
            entry["provenance"] = _rows(con, "SELECT field, value, source_contact_key, source_dataset, rule FROM "
                                             "core.customer_field_provenance WHERE customer_id = ? ORDER BY field", [cid])
        doc["customers"].append(entry)
    doc["consent_rule"] = ("per channel, the most restrictive answer of the person's source records wins "
                           "(any 'no' over 'yes'; unknown counts as no for contact)")
    records = {}
    for ds in cfg.datasets:
        pred = match_sql(ds, "_export_hashes", salt)
        if pred and have(f"raw.{ds.key}"):
            rows = _rows(con, f"SELECT * FROM raw.{ds.key} WHERE {pred} ORDER BY _source_file, _file_version, _source_line")
            if rows:
                records[ds.key] = rows
    doc["source_records"] = records
    if have("raw.quarantine_rows"):
        rx = token_regex(s.tokens())
        doc["quarantined_source_rows"] = _rows(
            con, "SELECT dataset, source_file, file_version, source_line, reason, record FROM raw.quarantine_rows "
                 f"WHERE regexp_matches(lower(coalesce(record, '')), '{rx}') ORDER BY ALL")
    if have("identity.records"):
        # the match spec's term frequencies are shares of the whole list, not about the person
        doc["identity_records"] = _rows(con, "SELECT COLUMNS(lambda c: NOT starts_with(c, 'tf_')) FROM identity.records "
                                             f"WHERE contact_key IN {_q(s.contact_keys)} ORDER BY contact_key")
    if have("identity.id_changes"):
        doc["customer_id_history"] = _rows(con, "SELECT * FROM identity.id_changes WHERE old_customer_id IN "
                                                f"{ids} OR new_customer_id IN {ids} ORDER BY changed_at")
    for section, (table, order) in CUSTOMER_TABLES.items():
        if have(table):
            doc[section] = _rows(con, f"SELECT * FROM {table} WHERE customer_id IN {ids} ORDER BY {order}")
    doc["scores"], versions = {}, set()
    for task, table in SCORE_TABLES.items():
        if have(table):
            rows = _rows(con, f"SELECT * FROM {table} WHERE customer_id IN {ids} ORDER BY ALL")
            doc["scores"][task] = rows
            versions |= {(task, r["model_version"]) for r in rows if r.get("model_version")}
    doc["models"] = _model_cards(paths, versions)
    if have("alerts.customer_alerts"):
        alerts = _rows(con, f"SELECT * FROM alerts.customer_alerts WHERE customer_id IN {ids} ORDER BY alert_date, kind")
        sinks = Outbox(paths.outbox).by_sink()
        for a in alerts:
            a["delivered_to"] = sorted(sink for sink, done in sinks.items() if a["alert_id"] in done)
        doc["alerts"] = alerts
    con.execute("DROP TABLE IF EXISTS _export_hashes")
    return doc


def _model_cards(paths: Paths, versions: set[tuple[str, str]]) -> dict:
    """What each model behind a score is: its algorithm, training cutoffs and registration time."""
    reg, out = Registry(paths.models), {}
    for task, version in sorted(versions):
        try:
            card = reg.card(task, version)
        except RegistryError:
            out[f"{task} {version}"] = {"note": "model no longer in the registry"}
            continue
        out[f"{task} {version}"] = {k: card.get(k) for k in ("task", "version", "model", "registered_at",
                                                             "training_cutoffs", "test_cutoff", "features")}
    return out


def export(con, paths: Paths, cfg: SourceConfig, identifier_type: str, identifier: str, *, request_id: str,
           actor: str, customer_id: str | None = None, all_matching: bool = False) -> Path:
    """Write the export document; returns its path. Recorded in the audit log, and so is a request
    refused for matching several customers (with their number only)."""
    try:
        doc = build(con, paths, cfg, identifier_type, identifier, request_id, customer_id=customer_id,
                    all_matching=all_matching)
    except AmbiguousSubject as e:
        audit.record(con, "export", actor, request_id, "refused_ambiguous", {"customers_matching": e.customers})
        raise
    out = exports_dir(paths)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{request_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    audit.record(con, "export", actor, request_id, "written",
                 {"customers": len(doc["customers"]), "source_records": sum(len(v) for v in doc["source_records"].values()),
                  "events": len(doc.get("events", [])), "file": path.relative_to(paths.home).as_posix(),
                  "scope": "customer_id" if customer_id else "all_matching" if all_matching else "single"})
    return path
