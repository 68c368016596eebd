"""Reading a YAML file from outside (a manifest, a job file) with the same guards everywhere:
a regular file of bounded size, UTF-8, PyYAML's safe loader, no alias bomb (a self-referencing
alias, or aliases expanding to more than MAX_ALIAS_GROWTH nodes), and every repeated key named."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import yaml

from batch_engine.inputs import Unreadable, read_input

MAX_YAML_BYTES = 64 * 1024 * 1024
MAX_ALIAS_GROWTH = 100_000  # nodes that expanding YAML aliases may add to a document


class YamlProblem(Exception):
    """The file cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present (faster)
# a plain scalar can take an implicit tag (bool, int, float, null, timestamp, merge) only if its
# first character starts one of those patterns; any other is text, told without the regexes
_MAY_BE_TYPED = frozenset(_BaseLoader.yaml_implicit_resolvers)
_STR = "tag:yaml.org,2002:str"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]  # libyaml's loader or the pure one, chosen at import
    """The safe loader, with PyYAML's resolver answered at once for scalars that cannot be typed
    (most of a catalog: the resolver's regexes are the slow part of a parse)."""

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


def read_yaml(path: Path, what: str) -> tuple[yaml.Node | None, Any, list[str]]:
    """The YAML node tree of the file at `path`, its data, and the problems of repeated keys;
    YamlProblem if it cannot be read at all."""
    try:
        raw = read_input(path, MAX_YAML_BYTES, what=what)
    except Unreadable as e:
        hint = " (split the catalog)" if e.errno == errno.EFBIG else ""
        raise YamlProblem([f"{e}{hint}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise YamlProblem([f"line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                           f"save {what} as UTF-8"]) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and "&" in text and _MAY_HOLD_ANCHOR.search(text) \
                    and (reason := _alias_bomb(node)):
                raise YamlProblem([reason])
            data = loader.construct_document(node) if node is not None else None
            repeated_keys = loader.repeated_keys
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise YamlProblem([f"{where}YAML syntax error: {str(reason)[:200]}"]) from None
    problems: list[str] = []
    if node is not None and repeated_keys:
        _duplicate_keys(node, problems)
    return node, data, problems


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
