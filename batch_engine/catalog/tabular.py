"""Catalog rows from a spreadsheet export (CSV) or JSON Lines, turned into manifest items.

`items_from: catalog.csv` (relative to the manifest's folder) with a `prompt_template` such as
"Slow dolly-in on the {title}, {style} lighting": each row gives `id`, `image_url` (or a local
`image`), optionally `end_image_url` / `end_image`, the columns the template names, and any
column that is a model field (duration, resolution, ...). Other columns are ignored. Every
missing column, unknown placeholder and bad row is reported at once, with its file and line.
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path
from typing import Any

from batch_engine.catalog.items import DEFAULT_KEYS
from batch_engine.inputs import Unreadable, read_input

MAX_CATALOG_BYTES = 256 * 1024 * 1024
IMAGE_COLUMNS = ("image_url", "image")
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def template_fields(template: str) -> tuple[list[str], str | None]:
    """The column names a template uses, or the reason it cannot be used."""
    names = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                return [], f"placeholder {{{name}}} must be a plain column name, like {{title}}"
            names.append(name)
    except ValueError as e:
        return [], f"{e} (write {{{{ and }}}} for literal braces)"
    return names, None


def read_catalog(path: Path, template: str | None) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(where, item) for every usable row, and every problem; nothing partial is returned as good."""
    rows, problems = _rows(path)
    names, reason = template_fields(template) if template is not None else ([], None)
    if reason:
        return [], problems + [f"prompt_template: {reason}"]
    if not rows:
        return [], problems
    columns = set().union(*(row.keys() for _, row in rows)) if rows else set()
    needed = ["id", *names] + ([] if "prompt" in columns or template else ["prompt"])
    missing = [c for c in needed if c not in columns]
    if not columns & set(IMAGE_COLUMNS):
        missing.append("image_url (or image)")
    if missing:  # every row is still checked: all problems at once
        problems.insert(0, f"{path.name}: missing column(s): {', '.join(missing)}"
                        + (" (named in prompt_template)" if set(missing) & set(names) else ""))
    present = [name for name in names if name in columns]
    items = []
    for where, row in rows:
        empty = [name for name in present if not str(row.get(name) or "").strip()]
        if empty:
            problems.append(f"{where}: empty value in column(s) {', '.join(empty)} (used by prompt_template)")
            continue
        item = {key: value for key, value in row.items()
                if key in ("id", "end_image", "end_image_url", *IMAGE_COLUMNS, *DEFAULT_KEYS)
                and value not in (None, "")}
        if nul := [c for c in ("image", "end_image") if "\x00" in str(item.get(c, ""))]:
            problems.append(f"{where}: {', '.join(nul)}: a file's path holds no NUL character")
            continue
        for column in ("image", "end_image"):  # relative to the catalog file's folder
            if isinstance(item.get(column), str):
                item[column] = str((path.parent / item[column]).resolve())
        for flag in ("prompt_optimizer", "nsfw_checker"):
            if isinstance(item.get(flag), str) and item[flag].lower() in _BOOLS:
                item[flag] = _BOOLS[item[flag].lower()]
        if template is not None:
            item["prompt"] = template.format(**{name: str(row.get(name) or "").strip() for name in names})
        items.append((where, item))
    return items, problems


def _rows(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    try:
        text = read_input(path, MAX_CATALOG_BYTES, what="the catalog").decode("utf-8-sig")
    except Unreadable as e:
        return [], [f"items_from: {e}"]
    except UnicodeDecodeError:
        return [], [f"{path.name}: not UTF-8 text (export the spreadsheet as CSV UTF-8)"]
    if path.suffix.lower() == ".jsonl":
        return _jsonl(path, text)
    if path.suffix.lower() != ".csv":
        return [], [f"items_from: {path.name}: use a .csv or .jsonl file"]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows, problems = [], []
    try:
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if None in row:
                problems.append(f"{where}: more values than columns")
                continue
            if None in row.values():
                problems.append(f"{where}: fewer values than columns")
                continue
            rows.append((where, {k.strip(): (v.strip() if isinstance(v, str) else v)
                                 for k, v in row.items() if k is not None}))
    except csv.Error as e:
        problems.append(f"{path.name} line {reader.line_num}: {e}")
    if not rows and not problems:
        problems.append(f"{path.name}: no rows")
    return rows, problems


def _jsonl(path: Path, text: str) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"{where}: not JSON")
            continue
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a JSON object")
            continue
        rows.append((where, value))
    if not rows and not problems:
        problems.append(f"{path.name}: no rows")
    return rows, problems
