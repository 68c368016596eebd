"""What the systems downstream read beside the videos: `<id>.json` for each video, and
`index.csv` plus `index.jsonl` with one row for every video (for a PIM or a spreadsheet).
Pure functions of the records: the output store writes what they return."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from batch_engine.states import State
from batch_engine.store.item import Item, video_name

INDEX_CSV, INDEX_JSONL = "index.csv", "index.jsonl"
INDEX_FIELDS = ("id", "video", "sha256", "bytes", "prompt", "model", "credits", "task_id", "finished_at")


def metadata_name(item_id: str) -> str:
    return f"{item_id}.json"


def poster_name(item_id: str) -> str:
    return f"{item_id}.jpg"


def video_metadata(item: Item, where: str, size: int, sha256: str) -> dict[str, Any]:
    """The video's own card: what was asked (prompt, model, settings), what was made, and when."""
    request = item.request
    settings = dict(request.get("input") or {})
    prompt = settings.pop("prompt", None)
    return {"id": item.id, "video": where, "file": video_name(item.id), "bytes": size, "sha256": sha256,
            "prompt": prompt, "model": request.get("model"), "settings": settings, "task_id": item.task_id,
            "credits": item.credits, "attempts": item.attempts, "media": _media(item), "flags": item.flags or [],
            "poster": poster_name(item.id), "created_at": item.created_at,
            "submitted_at": item.submitted_at, "finished_at": item.finished_at}


def encode_metadata(card: dict[str, Any]) -> bytes:
    return json.dumps(card, indent=2, ensure_ascii=False).encode() + b"\n"


def index_rows(items: Iterable[Item], where: Callable[[str], str]) -> list[dict[str, Any]]:
    """One row for each item with a video, in the ledger's order."""
    rows = []
    for item in items:
        if item.state is State.SUCCEEDED and item.video:
            rows.append({"id": item.id, "video": where(item.id), "sha256": item.sha256, "bytes": item.size,
                         "prompt": (item.request.get("input") or {}).get("prompt"),
                         "model": item.request.get("model"), "credits": item.credits,
                         "task_id": item.task_id, "finished_at": item.finished_at})
    return rows


def index_csv(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV, a cell that a spreadsheet would run as a formula quoted with a "'"."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue().encode("utf-8-sig")


def index_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _media(item: Item) -> dict[str, Any] | None:
    m = item.media
    return None if m is None else {"duration": m.duration, "width": m.width, "height": m.height,
                                   "codec": m.codec, "fps": m.fps}
