"""Tables of two engines held equal: every row's values normalised (dates and timestamps as ISO
text, lists as tuples, missing as None, whole numbers as integers, other floats to ``DIGITS``
significant digits), hashed, and the two multisets of row hashes compared; the rows that differ
come back for the message."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
from collections import Counter

import numpy as np
import pandas as pd

DIGITS = 9        # floats agree to 9 significant digits (sums in another order differ in the last bits)


def _norm(v):
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.ndarray, list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, decimal.Decimal):      # DuckDB's frames hold a DECIMAL as a float, Spark's as a Decimal
        v = float(v)
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer():       # an integer column with a null comes to pandas as floats
            return int(v)
        return float(f"{float(v):.{DIGITS}g}") + 0.0
    if isinstance(v, dt.datetime):
        # DuckDB's frames hold a DATE as a timestamp at midnight, Spark's as a date
        return v.date().isoformat() if v == dt.datetime.combine(v.date(), dt.time()) else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def row_hashes(frame: pd.DataFrame, drop: tuple[str, ...] = ()) -> Counter:
    cols = sorted(c for c in frame.columns if c not in drop)
    rows = frame[cols].astype(object).itertuples(index=False, name=None)
    return Counter(hashlib.sha256(repr(tuple(_norm(v) for v in r)).encode()).hexdigest() for r in rows)


def differences(a: pd.DataFrame, b: pd.DataFrame, drop: tuple[str, ...] = ()) -> str:
    """'' when ``a`` and ``b`` hold the same rows (in any order) over the same columns; else what differs."""
    ca, cb = set(a.columns) - set(drop), set(b.columns) - set(drop)
    if ca != cb:
        return f"columns differ: only in the first {sorted(ca - cb)}, only in the second {sorted(cb - ca)}"
    ha, hb = row_hashes(a, drop), row_hashes(b, drop)
    if ha == hb:
        return ""
    cols = sorted(ca)
    only_a = [r for r in a[cols].astype(object).itertuples(index=False, name=None)
              if (ha - hb)[hashlib.sha256(repr(tuple(_norm(v) for v in r)).encode()).hexdigest()]]
    only_b = [r for r in b[cols].astype(object).itertuples(index=False, name=None)
              if (hb - ha)[hashlib.sha256(repr(tuple(_norm(v) for v in r)).encode()).hexdigest()]]
    return (f"{sum((ha - hb).values())} of {len(a)} rows only in the first, {sum((hb - ha).values())} of {len(b)} "
            f"only in the second; columns {cols}; first {only_a[:2]}; second {only_b[:2]}")
