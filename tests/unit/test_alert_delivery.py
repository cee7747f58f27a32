"""Alert delivery: exactly once per sink across reruns, a webhook retried against a local server,
spreadsheet formulas neutralized in the CRM export."""

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from crm_platform.alerts.delivery import CsvSink, JsonlSink, Outbox, WebhookSink, alert_id
from crm_platform.core.spreadsheet import neutralize


def _alerts(n=3, day="2026-09-30"):
    return [{"alert_id": alert_id("churn_risk", f"C{i:09d}", "v0001", day), "customer_id": f"C{i:09d}",
             "kind": "churn_risk", "reason": f"churn probability 0.{70 + i}"} for i in range(n)]


class _Server:
    """A local HTTP server that answers each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses):
        self.statuses, self.bodies, self.gets = list(statuses), [], 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", outer.url + "/moved")
                self.end_headers()

            def do_GET(self):
                outer.gets += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_ids_are_deterministic():
    assert alert_id("churn_risk", "C000000001", "v0001", "2026-09-30") == \
        alert_id("churn_risk", "C000000001", "v0001", "2026-09-30")
    assert alert_id("churn_risk", "C000000001", "v0001", "2026-09-30") != \
        alert_id("churn_risk", "C000000001", "v0001", "2026-10-01")


def test_rerun_and_backfill_deliver_nothing_twice(tmp_path):
    out = Outbox(tmp_path / "outbox")
    sink = JsonlSink(tmp_path / "outbox" / "alerts.jsonl")
    first = out.deliver(_alerts(3), [sink])
    again = out.deliver(_alerts(3), [sink])                    # the same run materialized again
    more = out.deliver(_alerts(5), [sink])                     # a backfill that adds two
    lines = (tmp_path / "outbox" / "alerts.jsonl").read_text().splitlines()
    assert (first.sent, again.sent, again.already, more.sent) == ({"jsonl": 3}, {"jsonl": 0}, {"jsonl": 3},
                                                                  {"jsonl": 2})
    assert len(lines) == 5 and len({json.loads(x)["alert_id"] for x in lines}) == 5
    with pytest.raises(ValueError, match="not unique"):
        out.deliver(_alerts(2) * 2, [sink])


def test_csv_export_neutralizes_formulas(tmp_path):
    assert neutralize("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert neutralize("+49 30 1234") == "'+49 30 1234" and neutralize("Anna") == "Anna"
    for hostile in ("-2+3", "@SUM(A1)", "\t=1", "\r=1", "  =cmd|' /C calc'!A0", "|calc"):
        assert neutralize(hostile) == "'" + hostile
    assert neutralize(None) is None and neutralize(12.5) == 12.5 and neutralize("Müller-Lüdenscheidt") == "Müller-Lüdenscheidt"
    alerts = _alerts(1)
    alerts[0]["reason"] = "=cmd|' /C calc'!A0"
    Outbox(tmp_path / "outbox").deliver(alerts, [CsvSink(tmp_path / "crm.csv", ("alert_id", "customer_id", "reason"))])
    rows = list(csv.reader((tmp_path / "crm.csv").open()))
    assert rows[0] == ["alert_id", "customer_id", "reason"] and rows[1][2].startswith("'=")


def test_webhook_is_retried_and_a_failure_is_sent_again_later(tmp_path):
    server = _Server([500, 503])                       # down twice, then up
    try:
        out = Outbox(tmp_path / "outbox")
        report = out.deliver(_alerts(3), [WebhookSink(server.url, retries=3, backoff_seconds=0.01, allow_private=True)])
        assert report.sent == {"webhook": 3} and report.failed == {"webhook": 0}
        assert len(server.bodies) == 3 and [a["customer_id"] for a in server.bodies[-1]] == \
            [a["customer_id"] for a in _alerts(3)]
        server.statuses = [500] * 10                  # down for good
        down = out.deliver(_alerts(4), [WebhookSink(server.url, retries=2, backoff_seconds=0.01, allow_private=True)])
        assert down.sent == {"webhook": 0} and down.failed == {"webhook": 1} and "after 3 attempts" in down.errors[0]
        server.statuses = []                          # back up: only the lost alert goes out
        up = out.deliver(_alerts(4), [WebhookSink(server.url, retries=2, backoff_seconds=0.01, allow_private=True)])
        assert up.sent == {"webhook": 1} and len(server.bodies[-1]) == 1
    finally:
        server.close()


def test_a_redirected_post_is_not_counted_as_delivered(tmp_path):
    """urllib turns a POST answered by 302 into a GET without the body; the receiver's 200 to that
    GET counted as delivered and the ledger recorded alerts nobody got."""
    server = _Server([302])
    try:
        out = Outbox(tmp_path / "outbox")
        report = out.deliver(_alerts(2), [WebhookSink(server.url, retries=3, backoff_seconds=0.01, allow_private=True)])
        assert report.sent == {"webhook": 0} and report.failed == {"webhook": 2} and server.gets == 0
        assert len(server.bodies) == 1 and "redirected (302), not followed" in report.errors[0]
        assert out.delivered("webhook") == set()
    finally:
        server.close()


def test_a_4xx_is_a_configuration_error_not_retried_but_408_and_429_are(tmp_path):
    server = _Server([404])
    try:
        sink = WebhookSink(server.url, retries=3, backoff_seconds=0.01, allow_private=True)
        assert sink.send(_alerts(1)) == set() and len(server.bodies) == 1
        assert "HTTP 404" in sink.errors[0] and "configuration error (not retried)" in sink.errors[0]
        server.statuses = [429, 408]
        again = WebhookSink(server.url, retries=3, backoff_seconds=0.01, allow_private=True)
        assert len(again.send(_alerts(1))) == 1 and len(server.bodies) == 4 and not again.errors
    finally:
        server.close()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "data:text/plain,hello", "ftp://example.org/x",
                                 "javascript:alert(1)", "gopher://example.org/"])
def test_only_http_and_https_urls_are_sent_to(url, tmp_path):
    from crm_platform.alerts.delivery import build_sinks

    with pytest.raises(ValueError, match="only http and https are sent to"):
        build_sinks([{"name": "hook", "type": "webhook", "url": url}], tmp_path)
    sink = WebhookSink(url)                       # built directly: refused at send, no crash
    assert sink.send(_alerts(1)) == set() and "only http and https" in sink.errors[0]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/hook",
                                 "http://localhost:9/hook", "http://10.0.0.7/hook", "http://[::1]:9/hook",
                                 "http://0.0.0.0:9/hook"])
def test_internal_targets_are_refused_unless_the_sink_allows_them(url):
    sink = WebhookSink(url, retries=0)
    assert sink.send(_alerts(1)) == set()
    assert "loopback, link-local, private or reserved address: not sent" in sink.errors[0]


def test_a_local_receiver_is_reached_when_the_sink_allows_private_targets(tmp_path):
    from crm_platform.alerts.delivery import build_sinks

    server = _Server([])
    try:
        spec = {"name": "hook", "type": "webhook", "url": server.url, "backoff_seconds": 0.01}
        (refused,), _ = build_sinks([spec], tmp_path)
        assert refused.send(_alerts(1)) == set() and not server.bodies
        (allowed,), _ = build_sinks([{**spec, "allow_private_targets": True}], tmp_path)
        assert len(allowed.send(_alerts(1))) == 1 and len(server.bodies) == 1
    finally:
        server.close()


def test_credentials_and_query_strings_never_reach_a_message():
    from crm_platform.alerts.delivery import redact

    server = _Server([])
    seen = []
    try:
        # user-info is sent as basic authentication, not as part of the host
        handler = server.httpd.RequestHandlerClass
        original = handler.do_POST
        handler.do_POST = lambda self: (seen.append(self.headers.get("Authorization")), original(self))
        hook = server.url.replace("http://", "http://hookuser:s3cr3t-pass@") + "?api_key=K3Y-123"
        assert len(WebhookSink(hook, allow_private=True).send(_alerts(1))) == 1
        assert seen == ["Basic aG9va3VzZXI6czNjcjN0LXBhc3M="]
    finally:
        server.close()

    url = "https://hookuser:s3cr3t-pass@example.invalid/hook?api_key=K3Y-123&x=1"
    assert redact(url) == "https://example.invalid/hook?…"
    sink = WebhookSink(url, retries=0, allow_private=True, timeout_seconds=1)
    assert sink.send(_alerts(1)) == set()
    assert sink.errors and not any(secret in e for e in sink.errors for secret in ("s3cr3t", "K3Y-123", "hookuser"))
    refused = WebhookSink(url.replace("example.invalid", "127.0.0.1"), retries=0)
    assert refused.send(_alerts(1)) == set() and "s3cr3t" not in refused.errors[0] and "K3Y" not in refused.errors[0]


def test_each_sink_gets_only_its_fields(tmp_path):
    """Contact details travel only to a sink whose settings name them."""
    from crm_platform.alerts.delivery import build_sinks

    alerts = [{**a, "email": f"person{i}@example.de"} for i, a in enumerate(_alerts(2))]
    sinks, _ = build_sinks([{"name": "lean", "type": "jsonl", "path": "lean.jsonl"},
                            {"name": "mailer", "type": "jsonl", "path": "mailer.jsonl",
                             "fields": ["alert_id", "customer_id", "email"]}], tmp_path)
    Outbox(tmp_path).deliver(alerts, sinks)
    lean = [json.loads(x) for x in (tmp_path / "lean.jsonl").read_text().splitlines()]
    mailer = [json.loads(x) for x in (tmp_path / "mailer.jsonl").read_text().splitlines()]
    assert all("email" not in a for a in lean) and lean[0]["reason"] == "churn probability 0.70"
    assert [set(a) for a in mailer] == [{"alert_id", "customer_id", "email"}] * 2
    with pytest.raises(ValueError, match="unknown field.*birth_date"):
        build_sinks([{"name": "x", "type": "jsonl", "path": "x.jsonl", "fields": ["alert_id", "birth_date"]}], tmp_path)
