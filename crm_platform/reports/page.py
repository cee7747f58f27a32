"""The dashboard page: KPI tiles, then sections of charts and tables, as one HTML file with
plotly.js embedded (works offline, from a file share or an e-mail attachment).

Every chart is a plotly figure drawn by the page's own script, which marks each chart it drew
(``data-state="drawn"``) and the page once all are drawn (``body[data-ready]``), so a browser test
can tell a drawn chart from a broken one. A chart without enough data is a short text saying why
(``data-state="empty"``). All text is escaped; figures travel as JSON in ``<script
type="application/json">`` blocks.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

NOT_ENOUGH = "Not enough data"


@dataclass
class Chart:
    """One plotly figure with its title and a one-line caption (what it shows, how to read it);
    ``missing`` instead of a figure says why there is not enough data to draw it."""

    key: str
    title: str
    caption: str
    figure: go.Figure | None = None
    missing: str | None = None
    wide: bool = False

    def __post_init__(self):
        if (self.figure is None) == (self.missing is None):
            raise ValueError(f"chart {self.key}: give a figure or the reason it is missing, not both or neither")


@dataclass
class Table:
    """A small table (the top at-risk customers, the champion models) with a caption."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame
    missing: str | None = None
    wide: bool = True
    schema: type | None = None    # the Pandera model the rows must pass before they are shown


@dataclass
class Tile:
    """A KPI in the header: value, a comparison or note below it, and what it means."""

    label: str
    value: str
    detail: str = ""
    help: str = ""
    tone: str = ""          # "good", "bad" or "" (neutral), from the direction of the change


@dataclass
class Section:
    key: str
    title: str
    intro: str
    items: list = field(default_factory=list)


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _script_json(obj: str) -> str:
    # inside <script> only "</" could end the block early; "<\/" is the same JSON string
    return obj.replace("</", "<\\/")


def _chart(c: Chart) -> str:
    head = f'<h3>{_e(c.title)}</h3><p class="caption">{_e(c.caption)}</p>'
    cls = "card wide" if c.wide else "card"
    if c.figure is None:
        return (f'<div class="{cls} chart" id="{_e(c.key)}" data-state="empty">{head}'
                f'<p class="no-data">{NOT_ENOUGH}: {_e(c.missing)}</p></div>')
    fig = go.Figure(c.figure)
    # a figure may ask for more room (a note above its panels, long labels on the left)
    asked = c.figure.layout.margin
    fig.update_layout(template="plotly_white", margin=dict(l=max(50, asked.l or 0), r=20, t=max(20, asked.t or 0), b=45),
                      height=340 if not c.wide else 380,
                      font=dict(family="system-ui, sans-serif", size=12), legend=dict(orientation="h", y=1.14))
    return (f'<div class="{cls} chart" id="{_e(c.key)}" data-state="pending" data-figure="fig-{_e(c.key)}">{head}'
            f'<div class="plot"></div>'
            f'<script type="application/json" id="fig-{_e(c.key)}">{_script_json(fig.to_json())}</script></div>')


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1 else f"{v:,.0f}"
    return _e(v)


def _table(t: Table) -> str:
    head = f'<h3>{_e(t.title)}</h3><p class="caption">{_e(t.caption)}</p>'
    cls = "card wide table" if t.wide else "card table"
    if t.missing is not None or t.frame.empty:
        return (f'<div class="{cls}" id="{_e(t.key)}" data-state="empty">{head}'
                f'<p class="no-data">{_e(t.missing or "no rows")}</p></div>')
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>"
                   for r in t.frame.itertuples(index=False))
    cols = "".join(f"<th>{_e(c)}</th>" for c in t.frame.columns)
    return (f'<div class="{cls}" id="{_e(t.key)}" data-state="table">{head}'
            f'<table><thead><tr>{cols}</tr></thead><tbody>{rows}</tbody></table></div>')


def _tile(t: Tile) -> str:
    return (f'<div class="tile {_e(t.tone)}" title="{_e(t.help)}"><div class="label">{_e(t.label)}</div>'
            f'<div class="value">{_e(t.value)}</div><div class="detail">{_e(t.detail)}</div>'
            f'<div class="help">{_e(t.help)}</div></div>')


def body(title: str, subtitle: str, tiles: list[Tile], sections: list[Section]) -> str:
    """The page content without the charting library: what the dashboard says (scanned for
    personal data before it is written)."""
    nav = " · ".join(f'<a href="#{_e(s.key)}">{_e(s.title)}</a>' for s in sections)
    parts = [f"<header><h1>{_e(title)}</h1><p class='subtitle'>{_e(subtitle)}</p><nav>{nav}</nav></header>",
             '<section id="kpis"><div class="tiles">' + "".join(_tile(t) for t in tiles) + "</div></section>"]
    for s in sections:
        items = "".join(_chart(i) if isinstance(i, Chart) else _table(i) for i in s.items)
        parts.append(f'<section id="{_e(s.key)}"><h2>{_e(s.title)}</h2><p class="intro">{_e(s.intro)}</p>'
                     f'<div class="grid">{items}</div></section>')
    return "\n".join(parts)


def render(title: str, subtitle: str, tiles: list[Tile], sections: list[Section]) -> str:
    """The whole self-contained HTML page."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body data-charts="{sum(isinstance(i, Chart) and i.figure is not None for s in sections for i in s.items)}">
{body(title, subtitle, tiles, sections)}
<script>{DRAW}</script>
</body></html>
"""


DRAW = """
(function () {
  var jobs = [];
  document.querySelectorAll('.chart[data-figure]').forEach(function (div) {
    var fig = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    var target = div.querySelector('.plot');
    jobs.push(Plotly.newPlot(target, fig.data, fig.layout, {displaylogo: false, responsive: true})
      .then(function () { div.dataset.state = 'drawn'; },
            function (err) { div.dataset.state = 'error'; throw err; }));
  });
  Promise.all(jobs).then(function () { document.body.dataset.ready = String(jobs.length); },
                         function (err) { document.body.dataset.ready = 'error'; throw err; });
})();
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1f2933; }
header { background: #1f3a5f; color: #fff; padding: 18px 28px 12px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .subtitle { margin: 0 0 8px; opacity: .85; }
header nav a { color: #cfe0ff; text-decoration: none; font-size: 13px; }
section { padding: 8px 28px 16px; }
h2 { font-size: 19px; margin: 18px 0 2px; }
.intro { margin: 0 0 10px; color: #52606d; font-size: 14px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin-top: 14px; }
.tile { background: #fff; border-radius: 8px; padding: 12px 14px; border-left: 5px solid #9aa5b1; }
.tile.good { border-left-color: #2f9e44; } .tile.bad { border-left-color: #e03131; }
.tile .label { font-size: 13px; color: #52606d; }
.tile .value { font-size: 23px; font-weight: 600; margin: 2px 0; }
.tile .detail { font-size: 12px; color: #3e4c59; }
.tile .help { font-size: 11px; color: #7b8794; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 14px; }
.card { background: #fff; border-radius: 8px; padding: 10px 14px; min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h3 { margin: 4px 0 2px; font-size: 15px; }
.caption { margin: 0 0 6px; color: #52606d; font-size: 12.5px; }
.no-data { margin: 30px 0; padding: 24px; text-align: center; color: #7b8794; background: #f8f9fa;
           border: 1px dashed #cbd2d9; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e4e7eb; }
th { background: #f0f2f5; font-weight: 600; }
"""


def summary(sections: list[Section]) -> dict:
    """Which charts and tables the page draws and which say there is not enough data, and why."""
    drawn, empty = [], {}
    for s in sections:
        for i in s.items:
            why = i.missing if isinstance(i, Chart) else (i.missing or ("no rows" if i.frame.empty else None))
            if why is None:
                drawn.append(i.key)
            else:
                empty[i.key] = why
    return {"drawn": drawn, "not_enough_data": empty}


def withhold_invalid(sections: list[Section]) -> dict[str, pd.DataFrame]:
    """Validate every table that names a Pandera model; a table that fails is not shown (the page
    says it was withheld). Returns the failure cases per table key (empty frame: passed; tables
    without rows are left out)."""
    from crm_platform.contracts.validation import validate_frame

    out = {}
    for s in sections:
        for t in s.items:
            if isinstance(t, Table) and t.schema is not None and t.missing is None and not t.frame.empty:
                failures = validate_frame(t.frame, t.schema)
                out[t.key] = failures
                if len(failures):
                    t.missing = f"withheld: {len(failures)} value(s) failed the {t.schema.__name__} check"
    return out


def texts(tiles: list[Tile], sections: list[Section]):
    """Every piece of text the page shows: tiles, titles, captions, table cells and the strings
    inside the figures (labels, categories, hover text), for the personal-data scan."""
    for t in tiles:
        yield from (t.label, t.value, t.detail, t.help)
    for s in sections:
        yield from (s.title, s.intro)
        for i in s.items:
            yield from (i.title, i.caption, i.missing or "")
            if isinstance(i, Table):
                yield from (str(v) for row in i.frame.itertuples(index=False) for v in row if isinstance(v, str))
            elif i.figure is not None:
                yield from _strings(json.loads(go.Figure(i.figure).to_json()))


def _strings(obj, key: str = ""):
    if isinstance(obj, str):
        if key != "bdata":          # base64 of a numeric array, not text
            yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, key)


def personal_data(tiles: list[Tile], sections: list[Section], patterns: list[str]) -> list[str]:
    """The texts of the page that match any of ``patterns`` (e-mail address, phone number)."""
    rx = [re.compile(p) for p in patterns]
    return [t for t in texts(tiles, sections) if any(r.search(t) for r in rx)]
