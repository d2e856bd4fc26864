"""A small document model (sections of text, key/value lists, tables, figures) rendered to one self-contained
HTML page (inline CSS, figures as data URIs, a Content-Security-Policy that forbids fetching anything and runs
one script only: ``TABLE_SCRIPT``, allowed by its sha256 hash, which sorts and filters interactive tables) and
to Markdown. Every string that reaches the output is escaped here, in one place."""
from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d5dbe5;--head:#eef1f6;--zebra:#f8f9fb;--warn-bg:#fff5d1;
--warn-line:#d9a400;--bad-bg:#fde4e2;--bad-line:#c5221f;--good:#137333;--badfg:#b3261e;--accent:#1a56c4}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
margin:0 auto;padding:20px 32px 48px;max-width:1320px}
h1{font-size:24px;margin:4px 0 2px}h2{font-size:19px;margin:30px 0 8px;padding-bottom:4px;
border-bottom:2px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 10px}
.banner{padding:9px 14px;border-radius:6px;margin:10px 0;border-left:6px solid}
.banner.warn{background:var(--warn-bg);border-color:var(--warn-line)}
.banner.bad{background:var(--bad-bg);border-color:var(--bad-line)}
.banner.info{background:var(--head);border-color:var(--accent)}
p.note{color:var(--muted);font-size:13px;margin:4px 0 8px}
nav.toc{display:flex;flex-wrap:wrap;gap:4px 16px;background:var(--zebra);border:1px solid var(--line);
border-radius:6px;padding:6px 12px;margin:12px 0;font-size:13px}nav.toc a{color:var(--accent);text-decoration:none}
.scroll{overflow-x:auto;margin:6px 0 14px}
table{border-collapse:collapse;font-size:13px}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600;white-space:nowrap}
tbody tr:nth-child(even) td{background:var(--zebra)}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr.bad td{background:var(--bad-bg)}tbody tr.warn td{background:var(--warn-bg)}
tbody tr.good td{background:#e6f4ea}
td.flag{font-weight:700;color:var(--badfg)}td.id{white-space:nowrap}td.long{min-width:340px;max-width:640px}td.up{color:var(--good);font-weight:600}
td.down{color:var(--badfg);font-weight:600}
table.kv th{width:190px;text-align:left;vertical-align:top}table.kv td{max-width:1000px}
figure{display:inline-block;margin:8px 14px 8px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{font-size:12px;color:var(--muted);max-width:680px}
details{margin:6px 0;border:1px solid var(--line);border-radius:6px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
table.interactive th{cursor:pointer}table.interactive th[aria-sort=ascending]::after{content:" \\25B2"}
table.interactive th[aria-sort=descending]::after{content:" \\25BC"}
input.filter{font:inherit;padding:3px 8px;margin:4px 0;width:320px;border:1px solid var(--line);border-radius:4px}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"""
# Sorting (click a heading; numbers by value from data-v, blanks last either way) and filtering (every word of
# the box must occur in the row) of tables marked interactive. Nothing is fetched; the page works without it.
TABLE_SCRIPT = """(function(){
function key(c){var v=c.getAttribute('data-v');return v===null?null:parseFloat(v);}
document.querySelectorAll('table.interactive').forEach(function(t){
var body=t.tBodies[0],heads=t.tHead.rows[0].cells;
Array.prototype.forEach.call(heads,function(th,i){
th.tabIndex=0;th.title='sort by '+th.textContent;
function sort(){var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=a.cells[i],y=b.cells[i],p=key(x),q=key(y),e=!x.textContent,f=!y.textContent;
if(e||f){return e===f?0:(e?1:-1);}
var c=(p!==null&&q!==null)?p-q:x.textContent.localeCompare(y.textContent);return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});}
th.addEventListener('click',sort);
th.addEventListener('keydown',function(ev){if(ev.key==='Enter'){sort();}});});
var box=document.getElementById(t.getAttribute('data-filter'));
if(box){box.hidden=false;box.addEventListener('input',function(){
var words=box.value.toLowerCase().split(/\\s+/).filter(Boolean);
Array.prototype.forEach.call(body.rows,function(r){var text=r.textContent.toLowerCase();
r.hidden=!words.every(function(w){return text.indexOf(w)>=0;});});});}
});})();"""
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(TABLE_SCRIPT.encode("utf-8")).digest()).decode("ascii")
CSP = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; "
       "base-uri 'none'; form-action 'none'")


@dataclass
class Text:
    """A paragraph; ``style`` ``warn``/``bad``/``info`` makes it a banner, ``note`` small print."""
    text: str
    style: str = ""
    strong: bool = False


@dataclass
class KeyValues:
    rows: list[tuple[str, Any]]


@dataclass
class Table:
    df: pd.DataFrame
    caption: str = ""
    index: bool = False
    row_style: list[str | None] | None = None          # one CSS class (or None) per row
    cell_style: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)  # column -> class of a cell
    formats: dict[str, Callable[[Any], str]] = field(default_factory=dict)            # column -> text of a cell
    empty: str = "none"
    interactive: bool = False  # HTML: sortable headings and a filter box (TABLE_SCRIPT)


@dataclass
class Figure:
    key: str            # file name under the report folder, e.g. plots/f1_vs_cost.png
    caption: str
    png: bytes | None


@dataclass
class Details:
    summary: str
    blocks: list
    open: bool = False


@dataclass
class Section:
    title: str
    blocks: list
    anchor: str = ""

    def __post_init__(self):
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def fmt_value(value: Any) -> str:
    """Text of one cell: blank for missing, yes/no for booleans, readable numbers."""
    if is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}" if abs(int(value)) >= 10000 else str(int(value))
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == 0:
            return "0"
        if abs(v) >= 10000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) or \
        (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf")


def _frame(table: Table) -> pd.DataFrame:
    return table.df.reset_index() if table.index else table.df


# ---------------------------------------------------------------------------------------------------- HTML
def _html_table(table: Table) -> str:
    df = table.df
    if df is None or df.empty:
        return f"<p class='note'><em>{esc(table.empty)}</em></p>"
    frame = _frame(table)
    out = ["<div class='scroll'><table>"]
    if table.interactive:
        box = "filter-" + hashlib.sha1("|".join(map(str, frame.columns)).encode()).hexdigest()[:8]
        out = [f"<input type='search' id='{box}' class='filter' placeholder='filter rows, e.g. gpu completed' "
               f"aria-label='filter rows' hidden>", f"<div class='scroll'><table class='interactive' data-filter='{box}'>"]
    if table.caption:
        out.append(f"<caption>{esc(table.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in frame.columns) + "</tr></thead><tbody>")
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cls = table.row_style[i] if table.row_style and i < len(table.row_style) else None
        cells = []
        for col, value in zip(frame.columns, row):
            classes = []
            if _is_number(value) and not is_missing(value):
                classes.append("num")
            elif col in ("trial_id", "node"):
                classes.append("id")
            elif col in ("reason", "trial_ids"):
                classes.append("long")
            styler = table.cell_style.get(col)
            if styler is not None:
                extra = styler(value)
                if extra:
                    classes.append(extra)
            text = table.formats[col](value) if col in table.formats else fmt_value(value)
            attr = f" class='{' '.join(classes)}'" if classes else ""
            if table.interactive and "num" in classes:
                attr += f" data-v='{float(value)!r}'"
            cells.append(f"<td{attr}>{esc(text)}</td>")
        out.append((f"<tr class='{esc(cls)}'>" if cls else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_block(block) -> str:
    if isinstance(block, Text):
        body = f"<strong>{esc(block.text)}</strong>" if block.strong else esc(block.text)
        if block.style in ("warn", "bad", "info"):
            return f"<div class='banner {block.style}' role='note'>{body}</div>"
        return f"<p class='{esc(block.style)}'>{body}</p>" if block.style else f"<p>{body}</p>"
    if isinstance(block, KeyValues):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt_value(v))}</td></tr>" for k, v in block.rows)
        return f"<div class='scroll'><table class='kv'><tbody>{rows}</tbody></table></div>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        if not block.png:
            return ""
        data = base64.b64encode(block.png).decode("ascii")
        return (f"<figure><img alt='{esc(block.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{esc(block.caption)}</figcaption></figure>")
    if isinstance(block, Details):
        return (f"<details{' open' if block.open else ''}><summary>{esc(block.summary)}</summary>"
                + "".join(_html_block(b) for b in block.blocks) + "</details>")
    if isinstance(block, list):
        return "".join(_html_block(b) for b in block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(title: str, subtitle: str, lead: list, sections: list[Section], footer: str = "") -> str:
    """One self-contained page: ``lead`` blocks (banners, facts) under the title, a table of contents, sections."""
    toc = "".join(f"<a href='#{esc(s.anchor)}'>{esc(s.title)}</a>" for s in sections)
    parts = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<meta name='referrer' content='no-referrer'>",
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>" + (f"<p class='sub'>{esc(subtitle)}</p>" if subtitle else "") + "</header>",
        "".join(_html_block(b) for b in lead),
        f"<nav class='toc'>{toc}</nav>" if len(sections) > 1 else "",
    ]
    for section in sections:
        parts.append(f"<section id='{esc(section.anchor)}'><h2>{esc(section.title)}</h2>"
                     + "".join(_html_block(b) for b in section.blocks) + "</section>")
    if footer:
        parts.append(f"<footer>{esc(footer)}</footer>")
    if any(_has_interactive(s.blocks) for s in sections):
        parts.append(f"<script>{TABLE_SCRIPT}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _has_interactive(blocks: list) -> bool:
    for block in blocks:
        if isinstance(block, Table) and block.interactive and block.df is not None and not block.df.empty:
            return True
        if isinstance(block, Details) and _has_interactive(block.blocks):
            return True
        if isinstance(block, list) and _has_interactive(block):
            return True
    return False


# ------------------------------------------------------------------------------------------------ Markdown
def md_escape(value: Any, cell: bool = False) -> str:
    """Escape for Markdown: HTML-significant characters become entities (no raw HTML gets through), and in
    table cells pipes are escaped and line breaks flattened."""
    text = html.escape(str(value), quote=False)
    if cell:
        text = text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text


def _md_table(table: Table) -> str:
    if table.df is None or table.df.empty:
        return f"_{md_escape(table.empty)}_\n"
    frame = _frame(table)
    lines = []
    if table.caption:
        lines.append(f"**{md_escape(table.caption)}**\n")
    cols = [md_escape(c, cell=True) for c in frame.columns]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(frame[c])
                                   and not pd.api.types.is_bool_dtype(frame[c]) else "---"
                                   for c in frame.columns) + " |")
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cells = [md_escape(table.formats[c](v) if c in table.formats else fmt_value(v), cell=True)
                 for c, v in zip(frame.columns, row)]
        style = table.row_style[i] if table.row_style and i < len(table.row_style) else None
        if style == "bad" and cells:
            cells[0] = f"**{cells[0]}** ⚠"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_block(block, level: int = 3) -> str:
    if isinstance(block, Text):
        text = md_escape(block.text)
        if block.strong:
            text = f"**{text}**"
        if block.style in ("warn", "bad"):
            return f"> ⚠ {text}\n"
        if block.style == "info":
            return f"> {text}\n"
        return f"_{text}_\n" if block.style == "note" else f"{text}\n"
    if isinstance(block, KeyValues):
        return "\n".join(f"- **{md_escape(k)}**: {md_escape(fmt_value(v))}" for k, v in block.rows) + "\n"
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Figure):
        caption = md_escape(block.caption).replace("[", "\\[").replace("]", "\\]")
        return f"![{caption}]({block.key})\n" if block.png else ""
    if isinstance(block, Details):
        inner = "\n".join(_md_block(b, level + 1) for b in block.blocks)
        return f"{'#' * level} {md_escape(block.summary)}\n\n{inner}"
    if isinstance(block, list):
        return "\n".join(_md_block(b, level) for b in block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(title: str, subtitle: str, lead: list, sections: list[Section], footer: str = "") -> str:
    parts = [f"# {md_escape(title)}\n"]
    if subtitle:
        parts.append(f"{md_escape(subtitle)}\n")
    parts += [_md_block(b) for b in lead]
    for section in sections:
        parts.append(f"\n## {md_escape(section.title)}\n")
        parts += [_md_block(b) for b in section.blocks]
    if footer:
        parts.append(f"\n---\n{md_escape(footer)}\n")
    return "\n".join(parts)
