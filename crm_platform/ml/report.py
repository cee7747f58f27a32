"""A model card as plots and as a page: what the Dagster UI shows as metadata and what
``models/<task>/<version>/card.html`` shows in any browser (the UI keeps markdown images behind a
click; the page shows every plot and the whole metrics table at once)."""

from __future__ import annotations

import base64
import html

import pandas as pd

from crm_platform.core.plots import calibration_plot, decile_plot, value_decile_plot


def card_plots(card: dict) -> dict[str, bytes]:
    """The card's plots as PNG bytes, by title: calibration, observed rate per decile, predicted vs
    actual value per decile - whichever the card holds data for."""
    task, out = card["task"], {}
    if card.get("calibration"):
        out["calibration curve"] = calibration_plot(pd.DataFrame(card["calibration"]),
                                                    f"{task}: calibration on the test cutoff")
    if card.get("deciles"):
        out["decile chart"] = decile_plot(pd.DataFrame(card["deciles"]), f"{task}: observed rate per score decile")
    if card.get("value_deciles"):
        out["value decile chart"] = value_decile_plot(pd.DataFrame(card["value_deciles"]),
                                                      f"{task}: predicted vs actual per decile")
    return out


def metrics_frame(card: dict) -> pd.DataFrame:
    """One row per metric, one column per candidate model (the challenger's first): narrow enough
    to read whole, however many metrics a task reports."""
    frame = pd.DataFrame(card["metrics"])
    first = [c for c in frame.columns if c == card.get("model")]
    return frame[first + [c for c in frame.columns if c not in first]].round(4).rename_axis("metric").reset_index()


def card_page(card: dict, plots: dict[str, bytes]) -> str:
    """A self-contained HTML page of the card (no server, no script)."""
    e = html.escape
    head = (f"{card['task']} {card.get('version', '')}: {card['model']} - {card['main_metric']} "
            f"{card['challenger_metric']:.4f} against the baseline ({card['baseline']}) {card['baseline_metric']:.4f}")
    if card.get("champion_metric") is not None:
        head += f" and the champion's {card['champion_metric']:.4f}"
    parts = [f"<h1>{e(head)}</h1>",
             f"<p>trained {e(str(card.get('registered_at', '')))} on {card['train_examples']:,} examples "
             f"(cutoffs {e(', '.join(map(str, card['train_cutoffs'])))}), tested on {card['test_examples']:,} "
             f"at {e(str(card['test_cutoff']))}; data hash {e(card['data_hash'][:16])}</p>"]
    if card.get("decision"):
        parts.append(f"<p><b>gate:</b> {e(str(card['decision']))}</p>")
    parts.append("<h2>metrics</h2>" + metrics_frame(card).to_html(index=False, border=0))
    parts += [f'<h2>{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,'
              f'{base64.b64encode(png).decode()}">' for title, png in plots.items()]
    if card.get("importance"):
        parts.append("<h2>top predictors</h2>" + pd.DataFrame(card["importance"]).head(15).to_html(index=False, border=0))
    if card.get("notes"):
        parts.append("<h2>notes</h2><ul>" + "".join(f"<li>{e(str(n))}</li>" for n in card["notes"]) + "</ul>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
             "table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:right}"
             "th:first-child,td:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(head)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
