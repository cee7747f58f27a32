"""Every check result a step produces is in the platform's record of check evaluations, which the
dashboard, the data-quality alerts and the drift sensor read instead of Dagster's event log."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.alerts import failed_checks
from assets.lib import checks
from assets.reports import check_statuses
from crm_platform.core import check_results


def test_results_in_a_step_and_of_a_check_are_recorded_with_their_run(tmp_path, monkeypatch):
    # read back without the code location's filter (these checks are not of the location)
    monkeypatch.setattr(checks, "LOCATION_CHECKS", set())
    warehouse = DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))

    @policy.asset(key=["marts", "t"], check_specs=[dg.AssetCheckSpec("rows", asset=["marts", "t"])])
    def table(warehouse: DuckDBResource):
        yield dg.MaterializeResult(metadata={"rows": 3})
        yield dg.AssetCheckResult(check_name="rows", passed=False, description="3 rows, 5 expected",
                                  metadata={"rows": 3, "cases": dg.MetadataValue.md("| a |\n|---|\n| x |")})

    @policy.asset_check(asset=table, name="fresh")
    def fresh(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, description="fresh")

    result = dg.materialize([table, fresh], resources={"warehouse": warehouse}, raise_on_error=False)
    recorded = check_results.latest(check_results.path_beside(warehouse.database))
    assert [(e.asset, e.check, e.passed, e.severity) for e in recorded] == [
        ("marts/t", "fresh", True, "WARN"), ("marts/t", "rows", False, "ERROR")]
    assert {e.run_id for e in recorded} == {result.run_id}
    assert recorded[1].metadata == {"rows": 3}          # numbers and texts, never tables or markdown

    assert [(f.asset, f.check, f.description) for f in failed_checks(warehouse)] == [
        ("marts/t", "rows", "3 rows, 5 expected")]
    assert [(s.asset, s.check, s.passed) for s in check_statuses(warehouse)] == [
        ("marts/t", "fresh", True), ("marts/t", "rows", False)]

    @policy.asset(key=["marts", "t"], check_specs=[dg.AssetCheckSpec("rows", asset=["marts", "t"])])
    def fixed(warehouse: DuckDBResource):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="rows", passed=True)

    assert dg.materialize([fixed], resources={"warehouse": warehouse}).success
    assert failed_checks(warehouse) == []
