"""Which of the catalog's items a run is about: `--only ID,...` and `--shard K/N`.

A shard depends on the item's id alone (a hash of it), so adding items to a catalog never moves
an existing item to another shard: several machines or accounts can share one catalog, each with
its own shard and output folder, without overlap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/5' -> (2, 5): the second of five shards (K counts from 1)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard {text!r} is not K/N with 1 <= K <= N, e.g. 1/4")
    return int(m.group(1)), int(m.group(2))


def shard_of(item_id: str, shards: int) -> int:
    """The shard (1..shards) an id belongs to."""
    digest = hashlib.sha256(item_id.encode("utf-8", errors="surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def select(items: Sequence[T], ids: Sequence[str], *, only: set[str] | None = None,
           shard: tuple[int, int] | None = None) -> list[T]:
    """The items (with `ids[i]` the id of `items[i]`) in `only` and in `shard`, in order.
    ValueError names any id of `only` the catalog does not have."""
    if only is not None:
        missing = sorted(only - set(ids))
        if missing:
            raise ValueError(f"--only names {len(missing)} id(s) not in the catalog: "
                             + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    chosen = []
    for item, item_id in zip(items, ids, strict=True):
        if only is not None and item_id not in only:
            continue
        if shard is not None and shard_of(item_id, shard[1]) != shard[0]:
            continue
        chosen.append(item)
    return chosen
