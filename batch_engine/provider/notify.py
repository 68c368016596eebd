"""POST a run's summary to a hook (a chat or monitoring URL): best effort, never the API key."""

from __future__ import annotations

from typing import Any

import aiohttp


async def post_json(url: str, payload: Any, *, user_agent: str, timeout: float = 15.0) -> str | None:  # noqa: ASYNC109
    """None when the hook answered 2xx; otherwise what went wrong, in a few words."""
    try:
        async with aiohttp.ClientSession(headers={"User-Agent": user_agent},
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, json=payload, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
    except (TimeoutError, aiohttp.ClientError, ValueError) as e:
        return type(e).__name__
