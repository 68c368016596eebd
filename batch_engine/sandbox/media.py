"""The sandbox's result videos: deterministic bytes per task, served from any offset."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from importlib import resources
from typing import Any

BLOCK = 64 * 1024
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"  # a 24-byte ftyp box


def item_key(body: dict[str, Any]) -> str:
    """What identifies one catalog item in a create: its prompt and image."""
    inp = body.get("input", {})
    return f"{inp.get('image_url')}|{inp.get('prompt')}"


def clip_for(task_id: str) -> bytes:
    """A real, playable MP4 (two seconds, 96x96, a few KB; made once with ffmpeg, shipped in
    clips/), chosen by the task id: what the demo's report shows in a browser."""
    name = f"clip{int(hashlib.sha256(task_id.encode()).hexdigest(), 16) % 3 + 1}.mp4"
    return _CLIPS.setdefault(name, (resources.files("batch_engine.sandbox") / "clips" / name).read_bytes())


_CLIPS: dict[str, bytes] = {}


def video_chunks(task_id: str, size: int, start: int, *, clip: bool = False, decodable: bool = True) -> Iterator[bytes]:
    """The bytes of a task's video from `start`: its clip; or, at any size (tests of big files),
    its clip then a `free` box of seeded noise, block by block: a video that decodes. Not
    `decodable`: an ftyp box then the noise, an MP4's first bytes and nothing that plays."""
    if clip:
        yield clip_for(task_id)[start:]
        return
    head = clip_for(task_id)
    head = head + struct.pack(">I", size - len(head)) + b"free" if decodable and size >= len(head) + 8 else FTYP
    body_size = size - len(head)
    if start < len(head):
        yield head[start:]
        start = len(head)
    offset = start - len(head)
    block = offset // BLOCK
    while block * BLOCK < body_size:
        data = random.Random(f"{task_id}:{block}").randbytes(min(BLOCK, body_size - block * BLOCK))
        yield data[offset - block * BLOCK:] if offset > block * BLOCK else data
        block += 1
