"""A result body that a file host compressed although the identity encoding was asked for (a CDN
that gzips everything), decoded on the way, within the size cap that guards every body."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from batch_engine.errors import BadVideo

DECODABLE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def decoded_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> AsyncIterator[bytes]:
    """A compressed body, decoded a bounded piece at a time: never more than `limit` bytes out,
    and never more than a megabyte held from one input chunk (a small bomb cannot fill memory)."""
    inflate = zlib.decompressobj(DECODABLE[encoding])
    size = 0
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                piece = inflate.decompress(data, 1024 * 1024)
                data = inflate.unconsumed_tail
                size += len(piece)
                if size > limit:
                    raise BadVideo(f"the decoded file grew past {limit:,} bytes", code="too_large")
                if piece:
                    yield piece
        rest = inflate.flush()
    except zlib.error:
        raise BadVideo("the file host's compressed body cannot be decoded", code="encoded") from None
    if size + len(rest) > limit:
        raise BadVideo(f"the decoded file grew past {limit:,} bytes", code="too_large")
    if rest:
        yield rest
