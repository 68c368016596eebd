"""Local image files named by a manifest (`image:`, `end_image:`), checked before anything is
sent: the file exists, is JPEG, PNG or WebP by its bytes (not its name), and is at most 10 MB.
Each is known by the SHA-256 of its content: the item's request names `upload:<sha256>` in place
of a URL (so an edited image is an edited item), and the engine uploads each distinct file once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

MAX_IMAGE_BYTES = 10 * 1024 * 1024
UPLOAD_PREFIX = "upload:"


@dataclass(frozen=True, slots=True)
class LocalImage:
    path: Path        # absolute
    sha256: str
    kind: str         # jpeg, png or webp
    size: int

    @property
    def placeholder(self) -> str:
        return UPLOAD_PREFIX + self.sha256

    @property
    def upload_name(self) -> str:
        """The name it is uploaded under: its content hash (re-using a name overwrites at kie)."""
        return f"{self.sha256[:32]}.{'jpg' if self.kind == 'jpeg' else self.kind}"


def image_kind(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(path: Path) -> LocalImage | str:
    """The image, or why it cannot be used."""
    try:
        if not path.is_file():
            return f"{path}: no such file" if not path.exists() else f"{path}: not a regular file"
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return f"{path}: {size / 1e6:.1f} MB; at most {MAX_IMAGE_BYTES // (1024 * 1024)} MB"
        data = path.read_bytes()
    except OSError as e:
        return f"{path}: cannot read it ({e.strerror or e})"
    kind = image_kind(data[:16])
    if kind is None:
        return f"{path}: not a JPEG, PNG or WebP image (by its content)"
    return LocalImage(path.resolve(), hashlib.sha256(data).hexdigest(), kind, len(data))
