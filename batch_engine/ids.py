"""What an item id may be: it names `<id>.mp4` in the output folder, on every system the folder
may be copied to (Linux, macOS, Windows, a zip). One rule set, used for the manifest and for
every ledger record read back."""

from __future__ import annotations

import re
import unicodedata

MAX_ID_BYTES = 200  # UTF-8 bytes: `<id>.mp4` and `.replaced/<id>.<stamp>.mp4` stay under 255
_REJECTED = frozenset('<>:"|?*')  # characters file systems reject in a name
_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?", re.IGNORECASE)


def unsafe_id_reason(item_id: str) -> str | None:
    """Why `item_id` cannot safely name a file `<id>.mp4`, or None."""
    if not item_id:
        return "is empty"
    if item_id != item_id.strip():
        return "starts or ends with white space"
    size = len(item_id.encode("utf-8", errors="surrogatepass"))
    if size > MAX_ID_BYTES:
        return f"is {size} bytes in UTF-8; at most {MAX_ID_BYTES} (a file name's limit is in bytes)"
    if "/" in item_id or "\\" in item_id:
        return "contains a path separator ('/' or '\\')"
    if ".." in item_id:
        return "contains '..'"
    if item_id.startswith("."):
        return "starts with a dot (hidden file)"
    if item_id.endswith("."):
        return "ends with a dot (Windows drops it)"
    if (not item_id.isprintable()) if item_id.isascii() else any(  # in ASCII only controls are not printable
            unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in item_id):
        return "contains a control or invisible character"
    if not _REJECTED.isdisjoint(item_id):
        return "contains a character that file systems reject (<>:\"|?*)"
    if _RESERVED.fullmatch(item_id):
        return "is a name Windows reserves for a device (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    return None


def id_key(item_id: str) -> str:
    """Ids with equal keys name the same file somewhere (macOS and Windows fold case, macOS
    normalizes Unicode): two items must not share one."""
    return unicodedata.normalize("NFC", item_id).casefold()
