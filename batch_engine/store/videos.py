"""Where verified videos go: one small interface, and the local output folder behind it.

The pipeline streams a download into a part file of its own (`store.partial`), verifies it, then
hands it to a `VideoStore`, which makes it visible whole or not at all. Planning asks what is
there and how large; `redo` sets a video aside; status and reports ask where a video is. Another
home for videos (a bucket: `store.bucket_videos`) is one more class with these methods.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from batch_engine.inputs import open_regular
from batch_engine.store.folder import file_sizes, move_aside, publish, write_atomic
from batch_engine.store.item import video_name

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The store could not take or give a file (after its own retries): a user-facing message."""


class VideoStore(Protocol):
    def sizes(self) -> dict[str, int]:
        """File name -> size of what stands where videos go (read once per plan)."""
        ...

    def put(self, item_id: str, part: Path, sha256: str) -> None:
        """Make the verified file `part` the video of `item_id`: whole, durably, or not at all.
        StoreError when it cannot (the part is left where it is)."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """One of the engine's own files beside the videos (metadata, index, summary, report), whole."""
        ...

    def set_aside(self, item_id: str, tag: str) -> str | None:
        """Keep the current video of `item_id` under another name; where it went, if there was one."""
        ...

    def where(self, item_id: str) -> str:
        """Where the video of `item_id` is (a path or a URL), for people and scripts."""
        ...

    def names(self) -> Iterator[str]:
        """The ids of the videos there."""
        ...

    def open(self, item_id: str) -> BinaryIO:
        """The video's bytes, to read back (review)."""
        ...


class LocalVideos:
    """Videos as `<id>.mp4` in the output folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __repr__(self) -> str:
        return f"<LocalVideos {self.folder}>"

    def sizes(self) -> dict[str, int]:
        return file_sizes(self.folder)

    def put(self, item_id: str, part: Path, sha256: str) -> None:
        moved = move_aside(self.folder, item_id)
        if moved is not None:  # the user's own file, another tool's, or a damaged earlier download
            log.warning("item %s: a file was already at %s; it was moved to %s", item_id, video_name(item_id), moved)
        publish(part, self.folder / video_name(item_id))

    def write(self, name: str, data: bytes) -> None:
        try:
            write_atomic(self.folder / name, data)
        except OSError as e:
            raise StoreError(f"cannot write {self.folder / name}: {e.strerror or e}") from None

    def set_aside(self, item_id: str, tag: str) -> str | None:
        moved = move_aside(self.folder, item_id, tag)
        return None if moved is None else str(moved)

    def where(self, item_id: str) -> str:
        return os.path.join(os.path.abspath(self.folder), video_name(item_id))

    def names(self) -> Iterator[str]:
        for name in self.sizes():
            if name.endswith(".mp4"):
                yield name[:-4]

    def open(self, item_id: str) -> BinaryIO:
        return open(open_regular(self.folder / video_name(item_id)), "rb")
