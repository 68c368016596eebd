"""The sandbox's result videos: deterministic bytes per task, served from any offset."""

from __future__ import annotations

import random
from typing import Any, Iterator

BLOCK = 64 * 1024
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"  # a 24-byte ftyp box


def item_key(body: dict[str, Any]) -> str:
    """What identifies one catalog item in a create: its prompt and image."""
    inp = body.get("input", {})
    return f"{inp.get('image_url')}|{inp.get('prompt')}"


def video_chunks(task_id: str, size: int, start: int) -> Iterator[bytes]:
    """The bytes of a task's video from `start`: an ftyp box, then seeded noise, block by block."""
    body_size = size - len(FTYP)
    if start < len(FTYP):
        yield FTYP[start:]
        start = len(FTYP)
    offset = start - len(FTYP)
    block = offset // BLOCK
    while block * BLOCK < body_size:
        data = random.Random(f"{task_id}:{block}").randbytes(min(BLOCK, body_size - block * BLOCK))
        yield data[offset - block * BLOCK:] if offset > block * BLOCK else data
        block += 1
