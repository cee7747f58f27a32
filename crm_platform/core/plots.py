"""Plots for the Dagster UI as PNG bytes (matplotlib, no display needed): model cards, score
distributions, segment sizes, KPI trends."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def calibration_plot(table: pd.DataFrame, title: str) -> bytes:
    """Observed against predicted rate per score bin; a calibrated model lies on the diagonal."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    ax.plot(table["predicted"], table["observed"], marker="o", label="model")
    ax.set(xlabel="predicted probability (bin mean)", ylabel="observed rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def decile_plot(table: pd.DataFrame, title: str) -> bytes:
    """Observed rate per score decile (1 = highest scores) against the overall rate."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.bar(table["decile"].astype(str), table["rate"], color="#4c72b0")
    base = table["positives"].sum() / max(table["customers"].sum(), 1)
    ax.axhline(base, ls="--", c="grey", lw=1, label=f"overall rate {base:.2f}")
    ax.set(xlabel="score decile (1 = highest)", ylabel="observed rate", title=title)
    ax.legend(fontsize=8)
    return _png(fig)


def value_decile_plot(table: pd.DataFrame, title: str) -> bytes:
    """Mean predicted against mean actual value per prediction decile (1 = highest predictions):
    a calibrated model's bars pair up, a model that orders well has falling bars."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    pos = table["decile"].astype(int).to_numpy()
    ax.bar(pos - 0.2, table["mean_predicted"], width=0.4, color="#4c72b0", label="predicted")
    ax.bar(pos + 0.2, table["mean_actual"], width=0.4, color="#dd8452", label="actual")
    ax.set_xticks(pos)
    ax.set(xlabel="prediction decile (1 = highest)", ylabel="mean value per customer", title=title)
    ax.legend(fontsize=8)
    return _png(fig)


def histogram_plot(values, title: str, xlabel: str, bins: int = 20) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(pd.Series(values, dtype=float).dropna(), bins=bins, color="#55a868")
    ax.set(xlabel=xlabel, ylabel="customers", title=title)
    return _png(fig)


def bar_plot(labels, values, title: str, xlabel: str) -> bytes:
    """Horizontal bars, largest at the top (segment sizes)."""
    fig, ax = plt.subplots(figsize=(5.2, 0.3 * len(labels) + 1.2))
    ax.barh(list(map(str, labels))[::-1], list(values)[::-1], color="#4c72b0")
    ax.set(xlabel=xlabel, title=title)
    return _png(fig)


def trend_plot(frame: pd.DataFrame, title: str, shares: frozenset = frozenset()) -> bytes:
    """One small line plot per column of ``frame`` (indexed by day); ``shares`` are shown in %."""
    cols = list(frame.columns)
    fig, axes = plt.subplots(len(cols), 1, figsize=(5.2, 1.5 * len(cols) + 0.6), sharex=True, squeeze=False)
    for ax, col in zip(axes[:, 0], cols):
        s = frame[col] * (100 if col in shares else 1)
        ax.plot(frame.index, s, marker=".", color="#4c72b0")
        ax.set_ylabel(col.replace("_", " ") + (" %" if col in shares else ""), fontsize=8)
        if s.notna().sum() == 0:
            ax.text(0.5, 0.5, "not reported", transform=ax.transAxes, ha="center", color="grey")
    axes[0, 0].set_title(title)
    fig.autofmt_xdate()
    return _png(fig)
