"""Text that came from outside (the provider, a file host, a ledger someone edited), made safe to
store and to show: every secret replaced by ***, control and bidirectional-override characters
replaced by U+FFFD (no escape sequence reaches a terminal), and the length capped."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_TEXT = 2000  # characters kept of one outside message
MAX_URL = 8192   # characters of a URL from outside
# C0 and C1 controls, DEL, zero-width and bidi marks and overrides, the BOM
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean(text: object, secrets: Iterable[str] = (), *, limit: int = MAX_TEXT) -> str:
    value = str(text)
    for secret in secrets:
        if secret:
            value = value.replace(secret, "***")
    value = _UNSAFE.sub("\ufffd", value)
    return value if len(value) <= limit else value[:limit] + "…"


def outside_url(value: object, secrets: Iterable[str] = ()) -> str | None:
    """`value` if it is an http(s) URL that is safe to store, show and fetch: a host, no user name
    or password, no white space or control character, no secret inside, a sane length; else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL or not value.isascii():
        return None
    if not value.startswith(("https://", "http://")) or not value.isprintable() or " " in value:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # a bracketed host that is no address
        return None
    if parts.username is not None or parts.password is not None:  # credentials are not stored
        return None
    if not host or any(secret and (secret in value or secret in unquote(value)) for secret in secrets):
        return None
    return value


def has_unsafe(text: str, *, allow: str = "") -> bool:
    """Whether `text` holds a control or bidi character other than those in `allow`."""
    return any(c not in allow for c in _UNSAFE.findall(text))


def failure_text(item: Any, secrets: tuple[str, ...] = ()) -> str:
    """`[code] message (worth a retry)` of a failed item (or a status brief of one), safe for a
    terminal (the ledger may hold anything)."""
    verdict = {True: " (worth a retry)", False: " (not worth retrying as it is)"}.get(item.retryable, "")
    return clean(f"[{item.fail_code}] {item.fail_msg or ''}", secrets) + verdict
