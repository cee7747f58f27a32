"""The landing files as each source system writes them: CSV, semicolon CSV in Windows-1252,
JSON lines and Parquet, in the system's own formats and time zone, and the errors injected into a
share of rows (remembered in truth)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from crm_platform.demo import names as N
from crm_platform.demo.behaviour import (CHANNEL_NAMES, EMAIL_TYPES, NO_SOURCE, VISIT_SOURCES, WEB_TYPES,
                                         Behaviour)
from crm_platform.demo.people import Person


BERLIN = "Europe/Berlin"
ORDER_STATUS = np.array(["completed", "cancelled", "returned", "partially_returned"])
ORDER_CHANNEL = np.array(["web", "app", "store"])
PRIORITY = np.array(["low", "normal", "high", "urgent"])
CATS = np.array(N.CATEGORIES)


class CsvFile:
    """Appends pyarrow tables to one CSV file, header once."""

    def __init__(self, path: Path, delimiter: str = ",", encoding: str = "utf-8"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.delimiter, self.encoding = path, delimiter, encoding
        self.fh = path.open("wb")
        self.header = True
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        buf = io.BytesIO()
        pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=self.header,
                                                     delimiter=self.delimiter, quoting_style="needed"))
        data = buf.getvalue()
        if self.encoding != "utf-8":
            data = data.decode("utf-8").encode(self.encoding, errors="replace")
        self.fh.write(data)
        self.header = False
        self.rows += table.num_rows

    def close(self) -> None:
        self.fh.close()


def fmt(ts: np.ndarray, fmt: str, tz: str | None = BERLIN) -> pa.Array:
    """Epoch seconds (-1 = none) as text in a system's own format and time zone."""
    arr = pa.array(np.where(ts < 0, 0, ts), pa.timestamp("s", tz=tz or "UTC"))
    text = pc.strftime(arr, format=fmt)
    return pc.if_else(pa.array(ts < 0), pa.nulls(len(ts), pa.string()), text)


def ids(prefix: str, start: int, n: int, width: int = 8) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(start, start + n).astype(str), width))


class Dirt:
    """Injects data errors into a small share of rows and remembers them in truth."""

    def __init__(self, rng, rate: float, log: list):
        self.rng, self.rate, self.log = rng, rate, log

    def rows(self, n: int) -> np.ndarray:
        return np.flatnonzero(self.rng.random(n) < self.rate) if n else np.array([], int)

    def apply(self, dataset: str, table: pa.Table, key: str, options: list[tuple[str, str, str]]):
        """Replace values in picked rows; options are (column, kind, bad value)."""
        picked = self.rows(table.num_rows)
        if not len(picked):
            return table
        cols = {name: table.column(name).to_pylist() for name in {c for c, _, _ in options}}
        keys = table.column(key).to_pylist()
        for i in picked:
            col, kind, bad = options[int(self.rng.integers(0, len(options)))]
            cols[col][i] = bad
            self.log.append((dataset, keys[i], col, kind))
        for name, values in cols.items():
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pa.array([None if v is None else str(v) for v in values], pa.string()))
        return table


# the UTM source a visit from each channel carries (None: no tag), and the spend channel behind it
UTM = {"direct": None, "organic_search": "organic_search", "referral": "referral", "newsletter": "newsletter",
       "email": "newsletter", "paid_search": "paid_search", "social": "social", "display": "display",
       "affiliate": "affiliate", "sales": None}
PAID = {"newsletter": "email", "paid_search": "paid_search", "social": "social", "display": "display",
        "affiliate": "affiliate"}


def utm_tags(codes: np.ndarray, ts: np.ndarray) -> dict:
    """utm_source / utm_campaign on a session's landing event; campaigns of paid channels are
    named like the marketing spend's (channel-YYYY-MM)."""
    codes = np.asarray(codes, dtype=np.int64)
    source = np.full(len(codes), None, dtype=object)
    for code in np.unique(codes):
        if code == NO_SOURCE:
            continue
        name = VISIT_SOURCES[code] if code >= 0 else CHANNEL_NAMES[-1 - code]
        source[codes == code] = UTM[name]
    month = np.datetime_as_string(ts.astype("datetime64[M]"))
    paid = np.array([s in PAID for s in source], dtype=bool)
    spend = np.array([PAID.get(s, "") for s in source], dtype=object)
    campaign = np.where(paid, np.char.add(np.char.add(spend.astype(str), "-"), month), None)
    return {"utm_source": pa.array(source, pa.string()), "utm_campaign": pa.array(campaign, pa.string())}


class Writers:
    """The landing files; with a ``cutoff`` (epoch seconds), rows created at or after it go to the
    same-named files of the delivery folder instead."""

    def __init__(self, landing: Path, truth: Path, delivery: Path | None = None, cutoff: int | None = None,
                 tz: str = BERLIN):
        self.landing, self.truth, self.tz = landing, truth, tz      # local times are written in tz
        self.delivery, self.cutoff = delivery, cutoff
        self.later: dict[str, CsvFile] = {}
        self.later_jsonl: dict[str, object] = {}
        self.emails_taken: set[str] = set()   # a mailbox belongs to one person
        self.work_email_owner: dict[str, str] = {}
        self.files = {
            "shop_customers": CsvFile(landing / "shop" / "customers.csv"),
            "shop_orders": CsvFile(landing / "shop" / "orders.csv"),
            "shop_order_items": CsvFile(landing / "shop" / "order_items.csv"),
            "newsletter_subscribers": CsvFile(landing / "newsletter" / "abonnenten.csv", ";", "cp1252"),
            "newsletter_email_events": CsvFile(landing / "newsletter" / "email_events.csv"),
            "sales_leads": CsvFile(landing / "sales" / "leads.csv"),
            "nps_responses": CsvFile(landing / "nps" / "responses.csv"),
            "marketing_spend": CsvFile(landing / "marketing" / "spend.csv"),
            "truth_records": CsvFile(truth / "contact_records.csv"),
            "truth_persons": CsvFile(truth / "persons.csv"),
        }
        (landing / "support").mkdir(parents=True, exist_ok=True)
        (landing / "web").mkdir(parents=True, exist_ok=True)
        self.jsonl = {"support_requesters": (landing / "support" / "requesters.jsonl").open("w", encoding="utf-8"),
                      "support_tickets": (landing / "support" / "tickets.jsonl").open("w", encoding="utf-8")}
        self.counts: dict[str, int] = {}
        self.web_rows = 0

    def _delivered(self, path: Path) -> Path:
        rel = path.relative_to(self.landing)
        return self.delivery / rel.parent / f"{rel.stem}-{self.delivery.name}{rel.suffix}"

    def _late(self, when) -> np.ndarray | None:
        if self.cutoff is None:
            return None
        late = np.asarray(when, dtype=np.int64) >= self.cutoff
        return late if late.any() else None

    def _write(self, name: str, table: pa.Table, when) -> None:
        """One landing CSV's rows: the history to ``landing/``, the delivery days to the delivery."""
        late = self._late(when)
        if late is None:
            self.files[name].write(table)
            return
        self.files[name].write(table.filter(pa.array(~late)))
        if name not in self.later:
            base = self.files[name]
            self.later[name] = CsvFile(self._delivered(base.path), base.delimiter, base.encoding)
        self.later[name].write(table.filter(pa.array(late)))

    def _jsonl(self, name: str, when: int, record: dict) -> None:
        """One JSON line to the landing file, or to the delivery's when created after the cutoff."""
        if self.cutoff is None or when < self.cutoff:
            fh = self.jsonl[name]
        else:
            if name not in self.later_jsonl:
                path = self._delivered(Path(self.jsonl[name].name))
                path.parent.mkdir(parents=True, exist_ok=True)
                self.later_jsonl[name] = path.open("w", encoding="utf-8")
            fh, name = self.later_jsonl[name], f"delivery/{name}"
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[name] = self.counts.get(name, 0) + 1

    def _table(self, rows: list[dict], ts_cols: dict[str, str]) -> pa.Table:
        if not rows:
            return None
        cols = {k: [r[k] for r in rows] for k in rows[0]}
        out = {}
        for k, v in cols.items():
            out[k] = fmt(np.array(v, dtype=np.int64), ts_cols[k], self.tz) if k in ts_cols else \
                pa.array([None if x in ("", None) else str(x) for x in v], pa.string())
        return pa.table(out)

    def shop_customers(self, rows, dirt):
        t = self._table(rows, {"created_at": "%Y-%m-%d %H:%M:%S", "updated_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("shop_customers", t, "customer_no", [
                ("customer_no", "missing_required", ""), ("email", "malformed_email", "max.mustermann(at)web.de"),
                ("birthday", "unparseable_date", "31.02.1985"), ("created_at", "future_timestamp", "2031-01-01 10:00:00"),
                ("created_at", "unparseable_date", "gestern")])
            self._write("shop_customers", t, [r["created_at"] for r in rows])

    def orders(self, order_no, customer_no, o, dirt):
        t = pa.table({"order_no": order_no, "customer_no": customer_no,
                      "order_date": fmt(o["t"], "%Y-%m-%d %H:%M:%S", self.tz),
                      "status": ORDER_STATUS[o["status"]], "channel": ORDER_CHANNEL[o["channel"]],
                      "currency": np.full(len(order_no), "EUR"),
                      "total": np.char.mod("%.2f", o["total"]), "discount": np.char.mod("%.2f", o["discount"]),
                      "shipping": np.char.mod("%.2f", o["shipping"]),
                      "coupon": np.where(o["coupon"], "SAVE", "")})
        t = dirt.apply("shop_orders", t, "order_no", [
            ("total", "negative_amount", "-12.50"), ("order_date", "future_timestamp", "2031-05-01 10:00:00"),
            ("order_date", "unparseable_date", "32.13.2024"), ("customer_no", "missing_required", "")])
        self._write("shop_orders", t, o["t"])

    def items(self, order_no, ordered_at, it, dirt):
        t = pa.table({"order_no": order_no[it["order"]], "pos": it["line"].astype(str),
                      "sku": np.char.add(np.char.add(CATS[it["category"]], "-"),
                                         (np.round(it["price"]) % 97).astype(int).astype(str)),
                      "product_name": np.char.add("Artikel ", (np.round(it["price"]) % 97).astype(int).astype(str)),
                      "category": CATS[it["category"]], "qty": it["qty"].astype(str),
                      "unit_price": np.char.mod("%.2f", it["price"]),
                      "returned": np.where(it["returned"], "1", "0"),
                      "returned_at": fmt(it["returned_at"], "%Y-%m-%d %H:%M:%S", self.tz)})
        t = dirt.apply("shop_order_items", t, "order_no", [
            ("qty", "below_minimum", "0"), ("unit_price", "unparseable_number", "zwölf")])
        self._write("shop_order_items", t, ordered_at)

    def subscribers(self, rows, dirt):
        t = self._table(rows, {"Angemeldet am": "%d.%m.%Y %H:%M", "Geändert am": "%d.%m.%Y %H:%M"})
        if t is not None:
            t = dirt.apply("newsletter_subscribers", t, "Abonnent-ID", [
                ("E-Mail", "malformed_email", "anna.schmidt@@gmx"), ("Geburtsdatum", "unparseable_date", "30.02.1980"),
                ("Angemeldet am", "future_timestamp", "01.01.2031 10:00")])
            self._write("newsletter_subscribers", t, [r["Angemeldet am"] for r in rows])

    def email_events(self, first_id, sub_ids, e, bounds, dirt):
        n = len(sub_ids)
        month = e["campaign"].astype(int)
        camp = np.char.add("NL-", np.char.zfill(month.astype(str), 3))
        t = pa.table({"event_id": ids("M", first_id, n, 10), "subscriber_id": sub_ids,
                      "campaign_id": camp, "event": EMAIL_TYPES[e["type"].astype(int)],
                      "timestamp": fmt(e["t"], "%Y-%m-%dT%H:%M:%S+00:00", None)})
        t = dirt.apply("newsletter_email_events", t, "event_id", [
            ("event", "not_allowed", "geoeffnet"), ("timestamp", "unparseable_date", "n/a")])
        self._write("newsletter_email_events", t, e["t"])

    def requesters(self, rows, dirt):
        bad = set(dirt.rows(len(rows)).tolist())
        for i, r in enumerate(rows):
            created = r["created_at"]
            r = dict(r)
            for k in ("created_at", "updated_at"):
                r[k] = datetime.fromtimestamp(r[k], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ").replace("Z", "+00:00")
            if i in bad:
                r["created_at"] = "unknown"
                dirt.log.append(("support_requesters", r["id"], "created_at", "unparseable_date"))
            self._jsonl("support_requesters", created, r)

    def tickets(self, first_id, req_ids, shop_nos, t, end_ts, rng, dirt):
        bad = set(dirt.rows(len(req_ids)).tolist())
        iso = lambda s: datetime.fromtimestamp(int(s), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        for i in range(len(req_ids)):
            closed = int(t["closed"][i])
            if closed > end_ts:
                closed = -1
            rec = {"id": f"T{first_id + i:08d}", "requester_id": req_ids[i], "external_id": shop_nos[i],
                   "created_at": iso(t["opened"][i]), "solved_at": iso(closed) if closed >= 0 else None,
                   "status": "solved" if closed >= 0 else str(rng.choice(["open", "pending"])),
                   "priority": str(PRIORITY[t["priority"][i]]),
                   "type": N.TICKET_CATEGORIES[int(t["category"][i])],
                   "escalated": bool(t["escalated"][i]),
                   "satisfaction_rating": {"score": int(t["satisfaction"][i])} if t["satisfaction"][i] > 0 else None}
            if i in bad:
                rec["priority"] = "sofort"
                dirt.log.append(("support_tickets", rec["id"], "priority", "not_allowed"))
            self._jsonl("support_tickets", int(t["opened"][i]), rec)

    def leads(self, rows, dirt):
        t = self._table(rows, {"created_at": "%Y-%m-%d %H:%M:%S", "converted_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("sales_leads", t, "lead_id", [
                ("expected_value", "negative_amount", "-500.00"), ("stage", "not_allowed", "verloren")])
            self._write("sales_leads", t, [r["created_at"] for r in rows])

    def nps(self, rows, dirt):
        t = self._table(rows, {"submitted_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("nps_responses", t, "response_id", [
                ("score", "above_maximum", "11"), ("score", "unparseable_number", "zehn")])
            self._write("nps_responses", t, [r["submitted_at"] for r in rows])

    def web(self, chunk, first_id, visitors, cust_ref, wb, dirt):
        n = len(visitors)
        ts = wb["t"].astype("datetime64[s]")
        future = dirt.rows(n)
        ts[future] = np.datetime64("2031-06-01T12:00:00")
        for i in future:
            dirt.log.append(("web_events", f"E{first_id + i:010d}", "ts", "future_timestamp"))
        t = pa.table({
            "event_id": ids("E", first_id, n, 10), "visitor_id": visitors,
            "customer_no": pa.array(cust_ref, pa.string()),
            "session_id": np.char.add(f"S{chunk:05d}-", wb["session"].astype(str)),
            "ts": pa.array(ts, pa.timestamp("s")),
            "event_type": WEB_TYPES[wb["type"].astype(int)],
            "url": np.char.add("/c/", CATS[wb["category"]]),
            "sku": np.where(wb["type"] >= 1, np.char.add(CATS[wb["category"]], "-1"), None),
            "category": CATS[wb["category"]],
            **utm_tags(wb["source"], ts)})
        path = self.landing / "web" / f"events_part-{chunk:05d}.parquet"
        late = self._late(wb["t"])
        if late is None:
            pq.write_table(t, path)
        else:
            pq.write_table(t.filter(pa.array(~late)), path)
            later = self._delivered(path)
            later.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t.filter(pa.array(late)), later)
            self.counts["delivery/web_events"] = self.counts.get("delivery/web_events", 0) + int(late.sum())
            n -= int(late.sum())
        self.web_rows += n

    def spend(self, table, dirt):
        table = dirt.apply("marketing_spend", table, "campaign", [("amount_eur", "negative_amount", "-100.00")])
        day = pc.strptime(table.column("date"), format="%Y-%m-%d", unit="s")
        self._write("marketing_spend", table, pc.cast(day, pa.int64()).to_numpy())

    def errors(self, errors):
        with (self.truth / "injected_errors.csv").open("w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["dataset", "record_id", "column", "kind"])
            wr.writerows(errors)

    def truth_records(self, rows):
        if rows:
            self.files["truth_records"].write(pa.table({
                "dataset": [r[0] for r in rows], "source_record_id": [str(r[1]) for r in rows],
                "person_id": [r[2] for r in rows], "variations": [r[3] for r in rows]}))

    def truth_persons(self, persons: list[Person], b: Behaviour):
        self.files["truth_persons"].write(pa.table({
            "person_id": [p.pid for p in persons], "household_id": [p.household_id for p in persons],
            "twin_group": [p.twin_group or None for p in persons],
            "first_name": [p.first for p in persons], "last_name": [p.last for p in persons],
            "maiden_name": [p.maiden or None for p in persons],
            "birth_date": [p.birth.isoformat() for p in persons], "city": [p.city for p in persons],
            "moved": [p.old_address is not None for p in persons],
            "systems": ["|".join(sorted(p.systems)) for p in persons],
            "is_customer": b.is_customer, "acquisition_channel": np.array(CHANNEL_NAMES)[b.channel],
            "acquired_at": fmt(b.acquired_at, "%Y-%m-%dT%H:%M:%S+00:00", None),
            "churned_at": fmt(b.churned_at, "%Y-%m-%dT%H:%M:%S+00:00", None)}))

    def close(self) -> dict[str, int]:
        for name, f in self.files.items():
            f.close()
            self.counts[name] = f.rows
        for name, f in self.later.items():
            f.close()
            self.counts[f"delivery/{name}"] = f.rows
        for fh in [*self.jsonl.values(), *self.later_jsonl.values()]:
            fh.close()
        self.counts["web_events"] = self.web_rows
        return self.counts
