"""The platform's record of check evaluations: what it reads back is what was recorded, newest first
per check, bounded per check, and absent until something was recorded."""

import sqlite3

from crm_platform.core import check_results
from crm_platform.core.check_results import Evaluation


def _ev(asset, check, passed, run="r1", **metadata):
    return Evaluation(asset, check, run, passed, "ERROR", f"{check} {passed}", metadata, "")


def test_the_latest_evaluation_of_each_check_is_read_back(tmp_path):
    path = check_results.path_beside(tmp_path / "warehouse.duckdb")
    assert check_results.latest(path) == [] and check_results.last(path, "a/t", "c") is None
    check_results.record(path, [_ev("a/t", "c", True, validated_through="2026-09-30 10:00:00"),
                                _ev("a/u", "c", False)])
    check_results.record(path, [_ev("a/t", "c", False, run="r2")])
    latest = check_results.latest(path)
    assert [(e.asset, e.check, e.passed, e.run_id) for e in latest] == [("a/t", "c", False, "r2"),
                                                                          ("a/u", "c", False, "r1")]
    assert latest[0].seq > latest[1].seq and latest[0].evaluated_at
    assert check_results.latest(path, {("a/u", "c")})[0].asset == "a/u"
    assert check_results.last(path, "a/t", "c").metadata == {}


def test_metadata_comes_back_as_recorded_and_history_stays_bounded(tmp_path, monkeypatch):
    path = tmp_path / "check_results.sqlite"
    monkeypatch.setattr(check_results, "KEEP", 3)
    for i in range(5):
        check_results.record(path, [_ev("a/t", "c", True, validated_through=f"2026-09-{i + 1:02d}", rows=i)])
    assert check_results.last(path, "a/t", "c").metadata == {"validated_through": "2026-09-05", "rows": 4}
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM check_results").fetchall()[0][0] == 3
