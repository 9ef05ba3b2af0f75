"""The report as one self-contained HTML page: every image inline as a data URI, the
style inline, no script and no external reference, so it can be mailed, archived or
opened offline and shows the same everywhere.

Region outlines are HTML boxes over the thumbnail rather than lines burnt into it, so
labels stay sharp and the protected image itself is shown unaltered. Masked regions
(people as shapes) also get their outline, as an inline SVG polygon over the box.
"""

from __future__ import annotations

import datetime
from html import escape

from sisafs.report.collect import Entry, Report
from sisafs.report.thumbs import Thumb, colour

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#f4f4f2;color:#222}
h1{margin:0 0 4px}header p{margin:0;color:#555}
.summary{display:flex;flex-wrap:wrap;gap:16px;margin:16px 0}
.summary table{background:#fff;border-collapse:collapse;border-radius:6px}
.summary th,.summary td{padding:4px 10px;text-align:left;border-bottom:1px solid #eee}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.card{background:#fff;border-radius:8px;padding:12px;margin:0 0 16px;
 box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card h2{font-size:15px;margin:0 0 8px;word-break:break-all}
.meta{color:#666;font-weight:normal}
.pair{display:flex;flex-wrap:wrap;gap:12px}
.shot p{margin:4px 0 0;color:#555;font-size:12px}
.frame{position:relative;display:inline-block;line-height:0}
.box{position:absolute;border:2px solid;box-sizing:border-box}
.box span{position:absolute;left:-2px;top:-16px;font-size:11px;line-height:14px;
 padding:0 3px;color:#fff;white-space:nowrap}
.shape{position:absolute;left:0;top:0;pointer-events:none}
.note{color:#a33}
.missing{width:240px;height:120px;background:#ddd;display:flex;align-items:center;
 justify-content:center;color:#666}
ul.regions{margin:8px 0 0;padding-left:18px;font-size:12px;color:#444}
"""


def _table(title: str, rows: list[tuple[str, object]], swatches: bool = False) -> str:
    body = "".join(
        f"<tr><td>{_swatch(k) if swatches else ''}{escape(str(k))}</td>"
        f"<td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table><tr><th colspan=2>{escape(title)}</th></tr>{body}</table>"


def _swatch(label: str) -> str:
    return f"<span class=swatch style='background:{colour(label)}'></span>"


def _frame(thumb: Thumb | None, caption: str, boxes: bool) -> str:
    if thumb is None:
        return f"<div class=shot><div class=missing>no image</div><p>{escape(caption)}</p></div>"
    w, h = thumb.image.size
    parts = [f"<div class=shot><div class=frame style='width:{w}px;height:{h}px'>"
             f"<img src='{thumb.data_uri()}' width={w} height={h} alt='{escape(caption)}'>"]
    for label, (x, y, bw, bh) in thumb.boxes if boxes else []:
        c = colour(label)
        parts.append(f"<div class=box style='left:{x}px;top:{y}px;width:{bw}px;height:{bh}px;"
                     f"border-color:{c}'><span style='background:{c}'>{escape(label)}</span>"
                     "</div>")
    if boxes and thumb.outlines:
        parts.append(_shapes(thumb, w, h))
    parts.append(f"</div><p>{escape(caption)}</p></div>")
    return "".join(parts)


def _shapes(thumb: Thumb, w: int, h: int) -> str:
    """Mask outlines as one SVG layer the size of the thumbnail."""
    polys = []
    for label, polygons in thumb.outlines:
        for poly in polygons:
            points = " ".join(f"{x},{y}" for x, y in poly)
            polys.append(f"<polygon class=outline data-label='{escape(label)}' "
                         f"points='{points}' fill='none' stroke='{colour(label)}' "
                         "stroke-width='2'/>")
    # inline SVG in HTML needs no namespace, and the page names no external address
    return (f"<svg class=shape width={w} height={h} viewBox='0 0 {w} {h}'>"
            f"{''.join(polys)}</svg>")


def _card(n: int, e: Entry) -> str:
    what = (f"{e.format.upper()}, {e.path} path" if e.kind == "protected"
            else "image WITHOUT protection")
    head = (f"<h2>{escape(e.relpath)} <span class=meta>{what}, {len(e.regions)} regions, "
            f"level {e.level}, {e.size:,} bytes{', ' + escape(e.state) if e.state else ''}"
            "</span></h2>")
    shots = _frame(e.public, "protected (what the backing directory holds)", True)
    if e.original is not None:
        shots += _frame(e.original, "original (key holders only)", False)
    regions = "".join(
        f"<li>{_swatch(r['label'])}{escape(r['label'])}: box {r['box']}, score {r['score']}, "
        f"look {escape(str(r.get('look', '')))}"
        + _share(r)
        + (f"; altered because {escape(r['why'])}" if r.get("why") else "") + "</li>"
        for r in e.regions)
    regions += "".join(
        f"<li class=kept>{_swatch(r['label'])}{escape(r['label'])}: box {r['box']}, "
        f"score {r['score']}; kept as it is because {escape(r['why'])}</li>" for r in e.kept)
    note = f"<p class=note>{escape(e.note)}</p>" if e.note else ""
    levels = ""
    if e.levels is not None:
        w, h = e.levels.image.size
        levels = (f"<p>every level on this photo (sisafs preview):</p><img class=levels "
                  f"src='{e.levels.data_uri()}' width={w} height={h} "
                  f"alt='levels 1 to 5 of {escape(e.relpath)}'>")
    return (f"<section class=card id='photo-{n}' data-path='{escape(e.relpath)}'>{head}"
            f"<div class=pair>{shots}</div>{note}<ul class=regions>{regions}</ul>{levels}"
            "</section>")


def _share(region: dict) -> str:
    share = region.get("mask_share", 1.0)
    return f", mask {float(share):.0%} of its box" if share < 1.0 else ""


def render(report: Report) -> str:
    counts = report.counts()
    photos = report.photos
    whole = [e for e in report.entries if e.kind == "encrypted"]
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    where = f" (mounted on {report.mountpoint})" if report.mountpoint else ""
    originals = sum(1 for e in photos if e.original is not None)
    summary = [
        _table("files", [("photos", len(photos)), ("with original shown", originals),
                         ("stored encrypted whole", len(whole))]),
        _table("regions per label", sorted(counts["regions"].items()), swatches=True),
        _table("photos per label", sorted(counts["photos"].items()), swatches=True),
        _table("protection path", sorted(counts["paths"].items())),
        _table("photos per security level (configured)",
               [(f"level {k}", v) for k, v in sorted(counts["levels"].items())]),
    ]
    cards = "".join(_card(n, e) for n, e in enumerate(photos))
    rows = "".join(f"<tr><td>{escape(e.relpath)}</td><td>{e.size:,}</td>"
                   f"<td>{escape(e.state or 'stored encrypted whole')}</td></tr>" for e in whole)
    whole_html = (f"<h2>Stored encrypted whole</h2><div class=summary><table>"
                  f"<tr><th>file</th><th>bytes</th><th>state</th></tr>{rows}</table></div>"
                  if whole else "")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>sisafs report: {escape(str(report.vault))}</title><style>{STYLE}</style>"
        "</head><body><header><h1>sisafs report</h1>"
        f"<p>vault {escape(str(report.vault))}{escape(where)}; level {report.level}; "
        f"generated {when}</p></header><div class=summary>{''.join(summary)}</div>"
        f"{cards}{whole_html}</body></html>\n")
