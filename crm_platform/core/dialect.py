"""SQL that means the same on every engine the warehouse runs on (DuckDB, Spark): the few idioms
whose engine functions differ, written once so the stages give the same rows everywhere."""

from __future__ import annotations


def stable_hash(expr: str) -> str:
    """A hash of ``expr`` (text) that every engine computes alike: the first 15 hex digits of its
    MD5 as text, so an ORDER BY or a comparison with a threshold picks the same rows on DuckDB
    and on Spark (their own ``hash()`` functions differ)."""
    return f"substr(md5(CAST({expr} AS VARCHAR)), 1, 15)"


def stable_sample(expr: str, share: float) -> str:
    """A predicate keeping about ``share`` of the distinct values of ``expr``, the same on every
    engine and in any row order (``stable_hash`` below a threshold)."""
    threshold = format(min(16 ** 15 - 1, max(1, int(share * 16 ** 15))), "015x")
    return f"{stable_hash(expr)} < '{threshold}'"
