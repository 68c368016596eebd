"""Local image files named by a manifest (`image:`, `end_image:`), checked before anything is
sent: a regular file of at most 10 MB that is a whole JPEG, PNG or WebP by its structure (not
its name, nor only its first bytes). Each is known by the SHA-256 of its content: the item's
request names `upload:<sha256>` in place of a URL (so an edited image is an edited item), and
the engine uploads each distinct file once, from the very bytes it checked and hashed then.
"""

from __future__ import annotations

import errno
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from batch_engine.inputs import Unreadable, read_input

MAX_IMAGE_BYTES = 10 * 1024 * 1024
UPLOAD_PREFIX = "upload:"
_PNG = b"\x89PNG\r\n\x1a\n"


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
        return upload_name(self.sha256, self.kind)


def upload_name(sha256: str, kind: str) -> str:
    """The name an image is uploaded under: its content hash (re-using a name overwrites at kie)."""
    return f"{sha256[:32]}.{'jpg' if kind == 'jpeg' else kind}"


def signature_kind(head: bytes) -> str | None:
    """jpeg, png or webp by the first 12 bytes alone (what an image's type says it is)."""
    if head.startswith(_PNG):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def image_kind(data: bytes) -> str | None:
    """jpeg, png or webp when `data` is a whole image of that kind by its structure, else None."""
    kind = signature_kind(data)
    whole = {"png": _png_ok, "jpeg": _jpeg_ok, "webp": _webp_ok}
    return kind if kind is not None and whole[kind](data) else None


def read_image(path: Path) -> tuple[bytes, LocalImage] | str:
    """The file's bytes and what they are, or why they cannot be used (read once: what is
    checked is what is hashed and uploaded)."""
    try:
        data = read_input(path, MAX_IMAGE_BYTES, what="the image")
    except Unreadable as e:
        if e.errno == errno.EFBIG:
            return f"{path}: larger than allowed; at most {MAX_IMAGE_BYTES // (1024 * 1024)} MB"
        return str(e)
    kind = image_kind(data)
    if kind is None:
        return f"{path}: not a JPEG, PNG or WebP image (by its structure)"
    return data, LocalImage(path.resolve(), hashlib.sha256(data).hexdigest(), kind, len(data))


def check_image(path: Path) -> LocalImage | str:
    """The image, or why it cannot be used."""
    found = read_image(path)
    return found if isinstance(found, str) else found[1]


def _png_ok(data: bytes) -> bool:
    """Chunks with lengths that fit and good checksums, IHDR first, IEND last."""
    at, first = len(_PNG), True
    while at + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        if end > len(data) or (first and kind != b"IHDR"):
            return False
        if zlib.crc32(data[at + 4:at + 8 + length]) != struct.unpack(">I", data[end - 4:end])[0]:
            return False
        if kind == b"IEND":
            return True
        at, first = end, False
    return False


def _jpeg_ok(data: bytes) -> bool:
    """Segments with lengths that fit, a frame header before the scan, an end after it."""
    at, frame = 2, False
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return False
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if length < 2 or at + 2 + length > len(data):
            return False
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = True
        if marker == 0xDA:  # start of scan: the entropy-coded data runs to the end marker
            return frame and b"\xff\xd9" in data[at + 2 + length:]
        at += 2 + length
    return False


def _webp_ok(data: bytes) -> bool:
    """The RIFF size matches the file, and the first chunk is a VP8, VP8L or VP8X that fits."""
    riff = struct.unpack("<I", data[4:8])[0]
    if (riff + 8 != len(data) and riff + 9 != len(data)) or len(data) < 20:  # a pad byte may follow
        return False
    size = struct.unpack("<I", data[16:20])[0]
    return data[12:16] in (b"VP8 ", b"VP8L", b"VP8X") and 20 + size <= len(data)
