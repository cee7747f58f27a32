"""Every check result a step yields, written to the platform's record of check evaluations
(``crm_platform/core/check_results.py``) as Dagster receives it.

``policy.asset``, ``policy.multi_asset`` and ``policy.asset_check`` wrap each compute function with
``recorded``: the function keeps its signature (Dagster still injects its context and resources);
each ``AssetCheckResult`` it yields or returns, on its own or inside a ``MaterializeResult``, is
recorded beside the warehouse of the step's ``warehouse`` resource, with the run it came from.
"""

from __future__ import annotations

import functools
import inspect

import dagster as dg

from crm_platform.core import check_results


def _context():
    try:
        return dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return dg.AssetCheckExecutionContext.get()


SCALARS = (dg.IntMetadataValue, dg.FloatMetadataValue, dg.TextMetadataValue, dg.BoolMetadataValue)


def _plain(metadata) -> dict:
    """The numbers and short texts of a result's metadata (never its tables or markdown)."""
    out = {}
    for name, value in (metadata or {}).items():
        if isinstance(value, SCALARS):
            out[name] = value.value
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = value
    return out


def _evaluations(item, context) -> list[check_results.Evaluation]:
    if isinstance(item, dg.AssetCheckResult):
        found = [item]
    elif isinstance(item, dg.MaterializeResult):
        found = list(item.check_results or [])
    else:
        return []
    out = []
    for result in found:
        if result.asset_key is not None and result.check_name is not None:
            asset, name = result.asset_key, result.check_name
        elif isinstance(context, dg.AssetCheckExecutionContext):
            key = next(iter(context.check_specs)).key
            asset, name = key.asset_key, key.name
        else:
            asset, name = result.asset_key or context.asset_key, result.check_name
        out.append(check_results.Evaluation(
            asset=asset.to_user_string(), check=name, run_id=context.run.run_id, passed=bool(result.passed),
            severity=(result.severity or dg.AssetCheckSeverity.ERROR).value, description=result.description or "",
            metadata=_plain(result.metadata), evaluated_at=""))
    return out


def _record(item, warehouse) -> None:
    evaluations = _evaluations(item, _context())
    if evaluations:
        check_results.record(check_results.path_beside(warehouse.database), evaluations)


def recorded(fn):
    """``fn`` (an asset's or a check's compute function taking the ``warehouse`` resource), with every
    check result it produces recorded."""
    if "warehouse" not in inspect.signature(fn).parameters:
        return fn      # a step without the warehouse yields no check result of a table

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            for item in fn(*args, **kwargs):
                _record(item, kwargs["warehouse"])
                yield item
        return steps

    @functools.wraps(fn)
    def step(*args, **kwargs):
        item = fn(*args, **kwargs)
        _record(item, kwargs["warehouse"])
        return item
    return step
