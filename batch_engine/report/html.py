"""`batch-engine report DIR`: DIR/report.html, the page a catalog manager opens every morning.

One self-contained file (styles and script inline, no CDN: it works offline from file://), one
card per item: the source image, the video (an HTML5 player that loads only when its card comes
into view), the prompt, model, state, generation time and, for a failure, the reason. Filters by
state, a search box, a summary with a timeline of creates and completions against the rate cap
(inline SVG), and a checkbox per video that builds the `batch-engine redo` command. Every path is
relative to the page (the folder can be moved or zipped) and every text is escaped, so a prompt
holding HTML shows as text and runs nothing. Cards are drawn by the page itself (no script
needed to see them) with `content-visibility: auto`, so a thousand open quickly.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from batch_engine.catalog.images import UPLOAD_PREFIX
from batch_engine.config import Rate
from batch_engine.states import TERMINAL, State
from batch_engine.store.folder import write_atomic
from batch_engine.store.item import Item, parse_time
from batch_engine.store.metadata import poster_name
from batch_engine.text import clean

REPORT_NAME = "report.html"


def render(items: list[Item], *, folder: str, uploads: Mapping[str, str], rate: Rate | None,
           generated: str) -> str:
    """The page. `uploads` maps a local image's sha256 to its path relative to the page."""
    counts = Counter(item.state for item in items)
    durations = [d for item in items if (d := generation_seconds(item)) is not None]
    credits = sum(item.credits or 0 for item in items)
    stats: list[tuple[str, int | str, str]] = [("items", len(items), ""), ("succeeded", counts[State.SUCCEEDED], "ok"),
             ("failed", counts[State.FAILED], "bad"),
             ("in progress", len(items) - counts[State.SUCCEEDED] - counts[State.FAILED], "")]
    if durations:
        stats.append(("median generation", f"{statistics.median(durations):.0f} s", ""))
    if credits:
        stats.append(("credits spent", f"{credits:g}", ""))
    script = _asset("report.js")
    filters = [("all", "All")] + [(str(s), str(s).capitalize()) for s in State if counts[s]]
    return _PAGE.format(
        title=_e(f"batch-engine report: {folder}"), folder=_e(folder), generated=_e(generated),
        css=_asset("report.css"), js=script,
        script_hash=base64.b64encode(hashlib.sha256(script.encode()).digest()).decode(),
        stats="".join(f'<div class="stat {cls}"><b>{_e(str(v))}</b><span>{_e(k)}</span></div>'
                      for k, v, cls in stats),
        filters="".join(f'<button type="button" data-filter="{_e(key)}" aria-pressed="{str(key == "all").lower()}">'
                        f'{_e(label)}</button>' for key, label in filters),
        timeline=timeline_svg(items, rate), total=len(items),
        cards="\n".join(card(item, uploads) for item in items))


def card(item: Item, uploads: Mapping[str, str]) -> str:
    inp = item.request.get("input", {}) if isinstance(item.request, dict) else {}
    prompt = clean(inp.get("prompt", ""), limit=5000)
    model = clean(item.request.get("model", ""), limit=100) if isinstance(item.request, dict) else ""
    image = _image_src(inp.get("image_url"), uploads)
    source = (f'<img loading="lazy" decoding="async" src="{_e(image)}" alt="source image of {_e(item.id)}">'
              if image else '<div class="none">no image</div>')
    if item.state is State.SUCCEEDED and item.video:
        poster = f' poster="{_e(poster_name(item.id))}"' if item.media is not None else ""
        video = (f'<video controls muted playsinline preload="none" data-src="{_e(item.video)}"{poster} '
                 f'aria-label="video of {_e(item.id)}"></video>')
    else:
        video = f'<div class="none">{_e(str(item.state))}</div>'
    kind = str(item.state) if item.state in TERMINAL else "other"
    seconds = generation_seconds(item)
    meta = [f'<span class="state {kind}">{_e(str(item.state))}</span>', f"<span>{_e(model)}</span>"]
    if seconds is not None:
        meta.append(f"<span>{seconds:.0f} s</span>")
    if item.attempts > 1:
        meta.append(f"<span>{item.attempts} tries</span>")
    if item.media is not None:
        meta.append(f"<span>{item.media.duration:g} s, {item.media.width}x{item.media.height}</span>")
    meta += [f'<span class="state failed">{_e(clean(flag, limit=120))}</span>' for flag in item.flags or []]
    reason = ""
    if item.state is State.FAILED:
        verdict = "" if item.retryable is None else " (worth a retry)" if item.retryable else " (not worth retrying as it is)"
        reason = f'<div class="reason">[{_e(clean(item.fail_code or ""))}] {_e(clean(item.fail_msg or ""))}{verdict}</div>'
    pick = (f'<label class="redo"><input type="checkbox" class="pick" value="{_e(item.id)}"> make again</label>'
            if item.state is State.SUCCEEDED else "")
    text = " ".join([item.id, prompt, str(item.state), model, item.fail_msg or ""]).lower()
    return (f'<article class="card" data-id="{_e(item.id)}" data-state="{_e(str(item.state))}" '
            f'data-text="{_e(text)}"><div class="media">{source}{video}</div><div class="body">'
            f'<div class="id">{_e(item.id)}</div><div class="meta">{"".join(meta)}</div>'
            f'<div class="prompt">{_e(prompt)}</div>{reason}{pick}</div></article>')


def timeline_svg(items: Iterable[Item], rate: Rate | None, width: int = 1000, height: int = 120) -> str:
    """Creates and completions over time (cumulative), and the most the cap allows."""
    creates = sorted(t for item in items if (t := parse_time(item.submitted_at)) is not None)
    ends = sorted(t for item in items if item.state in TERMINAL
                  and (t := parse_time(item.finished_at)) is not None)
    if not creates:
        return '<p class="sub">No task has been created yet.</p>'
    start, end = creates[0], max(creates[-1], ends[-1] if ends else creates[-1])
    span, top = max(end - start, 1.0), max(len(creates), len(ends), 1)

    def points(times: list[float]) -> str:
        pts = [(0.0, float(height))]
        for n, t in enumerate(times, start=1):
            x = (t - start) / span * width
            pts += [(x, height - (n - 1) / top * height), (x, height - n / top * height)]
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    cap = ""
    if rate is not None:
        reach = min(span, top * rate.window / rate.creates)
        cap = (f'<line x1="0" y1="{height}" x2="{reach / span * width:.1f}" y2="{height - min(top, span * rate.creates / rate.window) / top * height:.1f}" '
               f'stroke="#c2362b" stroke-dasharray="5 4" stroke-width="1.5"><title>cap {_e(str(rate))}</title></line>')
    return (f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="creates and completions over {span:.0f} s">{cap}'
            f'<polyline fill="none" stroke="#3756d4" stroke-width="2" points="{points(creates)}"><title>creates</title></polyline>'
            f'<polyline fill="none" stroke="#1f8a4c" stroke-width="2" points="{points(ends)}"><title>completions</title></polyline>'
            f'</svg><div class="sub">blue: tasks created, green: finished, red dashes: the most the cap '
            f'{_e(str(rate) if rate else "")} allows; {span:.0f} s from the first create to the last end</div>')


def generation_seconds(item: Item) -> float | None:
    began, ended = parse_time(item.submitted_at), parse_time(item.finished_at)
    return ended - began if began is not None and ended is not None and ended >= began else None


def render_report(items: list[Item], where: str, uploads: Mapping[str, str], rate: Rate | None) -> bytes:
    """The page, for the output at `where` (a folder's absolute path, or a bucket URL)."""
    return render(items, folder=where, uploads=uploads, rate=rate,
                  generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")).encode()


def write_report(out_dir: Path, items: list[Item], uploads: Mapping[str, str], rate: Rate | None) -> Path:
    write_atomic(out_dir / REPORT_NAME, render_report(items, os.path.abspath(out_dir), uploads, rate))
    return out_dir / REPORT_NAME


def _image_src(url: Any, uploads: Mapping[str, str]) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    if url.startswith(UPLOAD_PREFIX):
        return uploads.get(url[len(UPLOAD_PREFIX):])
    return url if url.startswith(("https://", "http://")) else None


def _asset(name: str) -> str:
    return (resources.files("batch_engine.report") / "assets" / name).read_text(encoding="utf-8")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src * data: blob: file:; media-src 'self' file: *; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'">
<title>{title}</title><style>{css}</style></head>
<body data-folder="{folder}">
<header><h1>batch-engine report</h1><div class="sub">{folder} · made {generated}</div>
<div class="stats">{stats}</div><div class="timeline">{timeline}</div></header>
<div class="bar">{filters}<input id="search" type="search" placeholder="Search ids, prompts, reasons" aria-label="search">
<span class="sub"><span id="shown">{total}</span> shown</span></div>
<main>
{cards}
</main>
<footer><span><span id="picked">0</span> to make again</span><code id="command"></code>
<button id="copy" type="button">Copy</button><button id="export" type="button">Export list</button></footer>
<script>{js}</script>
</body></html>
"""
