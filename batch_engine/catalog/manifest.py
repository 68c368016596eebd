"""Read and validate a manifest: every problem at once, each naming the item and the field."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from batch_engine.catalog.bucket_images import bucket_image_problems, is_bucket_url
from batch_engine.catalog.items import DEFAULT_KEYS, ItemSpec, did_you_mean, fingerprint, validate_item
from batch_engine.catalog.tabular import read_catalog
from batch_engine.catalog.yamlfile import YamlProblem, read_yaml
from batch_engine.ids import id_key

__all__ = ["ItemSpec", "ManifestError", "fingerprint", "load_manifest", "validate_catalog"]

TOP_KEYS = ("defaults", "items", "items_from", "prompt_template")


class ManifestError(Exception):
    """The manifest cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s)")
        self.path = path
        self.problems = problems


def load_manifest(path: Path) -> list[ItemSpec]:
    """The items of a manifest file; ManifestError lists every problem."""
    with _collector_paused():
        try:
            node, data, problems = read_yaml(path, "the manifest")
        except YamlProblem as e:
            raise ManifestError(path, e.problems) from None
        return validate_catalog(data, path, node, problems=problems)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A catalog read allocates many objects that are all kept, and the cycle collector's passes
    over them find nothing: paused meanwhile (docs/benchmarks.md: a fifth of `validate`'s time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def validate_catalog(data: Any, path: Path, node: yaml.Node | None = None, *,
                     problems: list[str] | None = None) -> list[ItemSpec]:
    """The items of a manifest's data (as read from YAML, or built in code); `node`, when the
    data came from YAML, gives line numbers; `problems`: those found reading it."""
    problems = list(problems or [])
    if data is None:
        raise ManifestError(path, ["the manifest is empty; it needs an 'items:' list"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        hint = " (put the list under 'items:')" if isinstance(data, list) else ""
        raise ManifestError(path, [f"the manifest is {kind}; it must be a mapping with 'items:'{hint}"])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"top level: unknown key {key!r}{did_you_mean(key, TOP_KEYS)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping of field: value")
        defaults = {}
    for key in defaults:
        if key not in DEFAULT_KEYS:
            problems.append(f"defaults: unknown key {key!r}{did_you_mean(key, DEFAULT_KEYS)}")
    items = data.get("items")
    located: list[tuple[str, Any]] = []  # (where, entry) of the rows of `items_from`
    if data.get("items_from") is not None:
        located = _from_file(data, path, problems)
    elif data.get("prompt_template") is not None:
        problems.append("prompt_template: goes with items_from (a CSV or JSON Lines catalog)")
    if items is None and data.get("items_from") is not None:
        items = []
    elif items is None:
        problems.append("items: missing; list the videos to make under 'items:', or name a "
                        "catalog file with 'items_from:'")
        items = []
    elif not isinstance(items, list):
        problems.append("items: must be a list of mappings (each starting with '- id: ...')")
        items = []
    elif not items:
        problems.append("items: the list is empty; nothing to make")

    lines = _item_lines(node)
    specs: list[ItemSpec] = []
    seen: dict[str, tuple[str, str]] = {}
    located = [(f"item {pos}" + (f" (line {lines[pos - 1]})" if pos - 1 < len(lines) else ""), entry)
               for pos, entry in enumerate(items, start=1)] + located
    seen_images: dict = {}
    in_buckets: list[tuple[str, str, str]] = []  # (where, field, url) of images in a bucket
    for where, entry in located:
        spec = validate_item(entry, defaults, where, problems, base=path.parent, seen_images=seen_images)
        if spec is None:
            continue
        in_buckets += [(f"{where} {spec.id!r}", name, url) for name, url in
                       (("image_url", spec.image_url), ("end_image_url", spec.end_image_url)) if is_bucket_url(url)]
        first = seen.setdefault(id_key(spec.id), (spec.id, where))
        if first[1] != where:
            case = "" if first[0] == spec.id else \
                " (ids differing only in case or Unicode form share one file on macOS and Windows)"
            problems.append(f"{where} {spec.id!r}: id: duplicate of {first[1]} {first[0]!r}{case}")
            continue
        specs.append(spec)
    problems += bucket_image_problems(in_buckets)
    if problems:
        raise ManifestError(path, problems)
    return specs


def _from_file(data: dict, path: Path, problems: list[str]) -> list[tuple[str, Any]]:
    source, template = data.get("items_from"), data.get("prompt_template")
    if not isinstance(source, str) or not source.strip():
        problems.append("items_from: must be the path of a .csv or .jsonl file")
        return []
    if template is not None and not isinstance(template, str):
        problems.append("prompt_template: must be text")
        return []
    rows, found = read_catalog(path.parent / source, template)
    problems.extend(found)
    return rows


def _item_lines(node: yaml.Node | None) -> list[int]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return [child.start_mark.line + 1 for child in value.value]
    return []
