"""Read and validate a manifest: every problem at once, each naming the item and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from batch_engine.catalog.items import DEFAULT_KEYS, ItemSpec, did_you_mean, fingerprint, validate_item
from batch_engine.catalog.tabular import read_catalog
from batch_engine.collector import paused
from batch_engine.ids import id_key

__all__ = ["ItemSpec", "ManifestError", "fingerprint", "load_manifest", "validate_catalog"]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
# a plain scalar can take an implicit tag (bool, int, float, null, timestamp, merge) only if its
# first character starts one of those patterns; any other is text, told without the regexes
_MAY_BE_TYPED = frozenset(_BaseLoader.yaml_implicit_resolvers)
_STR = "tag:yaml.org,2002:str"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader, with PyYAML's resolver answered at once for most scalars (a 100,000-item
    catalog has 700,000 of them: the regexes took a third of the parse)."""

    repeated_keys = False  # a mapping lost a key to a later equal one (see _duplicate_keys)

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0] and value and value[0] not in _MAY_BE_TYPED:
            return _STR
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):
            self.repeated_keys = True
        return mapping


# an anchor (`&name`) starts a node's properties: at a line's start, after white space, or after
# a flow indicator (in flow context PyYAML takes ':' and '?' as indicators even without a space
# after them); a document without one cannot hold an alias, and needs no walk for alias bombs
_MAY_HOLD_ANCHOR = re.compile(r"(?:^|[\s\[\]{},:?])&\S", re.MULTILINE)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_ALIAS_GROWTH = 100_000  # nodes that expanding YAML aliases may add to a manifest
TOP_KEYS = ("defaults", "items", "items_from", "prompt_template")


class ManifestError(Exception):
    """The manifest cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s)")
        self.path = path
        self.problems = problems


def _parse(path: Path) -> tuple[yaml.Node | None, Any, bool]:
    """The manifest's YAML node tree, its data, and whether a mapping lost a key to an equal one;
    ManifestError if it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(path, [f"cannot read the manifest: {e.strerror or e}"]) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(path, [f"the manifest is {len(raw):,} bytes; at most "
                                   f"{MAX_MANIFEST_BYTES:,} are read (split the catalog)"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ManifestError(path, [f"line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                                   "save the manifest as UTF-8"]) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and "&" in text and _MAY_HOLD_ANCHOR.search(text) \
                    and (reason := _alias_bomb(node)):
                raise ManifestError(path, [reason])
            data = loader.construct_document(node) if node is not None else None
            repeated_keys = loader.repeated_keys
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise ManifestError(path, [f"{where}YAML syntax error: {reason}"]) from None
    return node, data, repeated_keys


def load_manifest(path: Path) -> list[ItemSpec]:
    """The items of a manifest file; ManifestError lists every problem."""
    with paused():  # see collector.py: a 100,000-item catalog loads 2.6x faster
        node, data, repeated_keys = _parse(path)
        return validate_catalog(data, path, node, repeated_keys=repeated_keys)


def validate_catalog(data: Any, path: Path, node: yaml.Node | None = None, *,
                     repeated_keys: bool = True) -> list[ItemSpec]:
    """The items of a manifest's data (as read from YAML, or built in code); `node`, when the
    data came from YAML, gives line numbers; `repeated_keys=False`: loading saw no mapping
    lose a key, so its nodes need no walk for them."""
    problems: list[str] = []
    if node is not None and repeated_keys:
        _duplicate_keys(node, problems)
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
    for where, entry in located:
        spec = validate_item(entry, defaults, where, problems, base=path.parent, seen_images=seen_images)
        if spec is None:
            continue
        first = seen.setdefault(id_key(spec.id), (spec.id, where))
        if first[1] != where:
            case = "" if first[0] == spec.id else \
                " (ids differing only in case or Unicode form share one file on macOS and Windows)"
            problems.append(f"{where} {spec.id!r}: id: duplicate of {first[1]} {first[0]!r}{case}")
            continue
        specs.append(spec)
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


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _alias_bomb(root: yaml.Node) -> str | None:
    """Why the document's aliases would blow up (a self-referencing one, or more than
    MAX_ALIAS_GROWTH nodes added by expanding them), or None. Each node is sized once."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not children_done:
            open_nodes.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    return f"line {child.start_mark.line + 1}: a YAML alias refers to itself"
                stack.append((child, False))
            continue
        open_nodes.discard(key)
        size[key] = 1 + sum(size[id(child)] for child in children)
        if size[key] - len(size) > MAX_ALIAS_GROWTH:
            return (f"YAML aliases expand to more than {MAX_ALIAS_GROWTH:,} extra nodes (an alias "
                    "bomb?); write the items out, or use 'defaults:' for shared fields")
    return None


def _duplicate_keys(node: yaml.Node, problems: list[str]) -> None:
    """PyYAML keeps the last of two equal keys silently; a manifest with one is a typo. Each node
    is looked at once, however many aliases name it."""
    stack, seen_nodes = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen_nodes:
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in current.value:
                name = getattr(key, "value", None)
                if isinstance(name, str):
                    if name in seen:
                        problems.append(f"line {key.start_mark.line + 1}: key {name!r} appears twice "
                                        "in the same mapping")
                    seen.add(name)
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
