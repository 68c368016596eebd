"""The review desk: a folder's videos in the browser, served on 127.0.0.1 behind a random token.

Every request needs the token (the first page load carries it as `?t=`, which sets a strict
cookie; the page's requests carry the cookie); a state change is a POST that carries it in a
header as well (never in the URL), as JSON, from this origin only. The Host must be the loopback
address the desk listens on (no DNS rebinding), and nothing is shared with another origin (no
CORS headers, no framing). Decisions go to `decisions.jsonl` at once (`store.decisions`);
"make again" runs through `make_again`, the same path as `redo`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from batch_engine.catalog.items import prompt_problem
from batch_engine.catalog.models import MODELS, PRO
from batch_engine.ids import unsafe_id_reason
from batch_engine.states import State
from batch_engine.store.decisions import DecisionBook
from batch_engine.store.ledger import LEDGER_NAME, LedgerError, read_ledger
from batch_engine.store.metadata import poster_name
from batch_engine.text import clean

COOKIE = "desk_token"
MakeAgain = Callable[[Mapping[str, str | None]], Awaitable[dict[str, Any]]]
log = logging.getLogger(__name__)
_DECISIONS = {"approve": "approved", "reject": "rejected", "remake": "remake", "clear": "cleared"}


class Desk:
    def __init__(self, folder: Path, *, make_again: MakeAgain | None = None, token: str | None = None,
                 command: str = "batch-engine") -> None:
        self.folder = folder
        self.token = token or secrets.token_urlsafe(24)
        self.make_again = make_again
        self.command = command          # how the page writes the `redo` command
        self.book = DecisionBook(folder).load()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._hosts: set[str] = set()
        self._remaking: asyncio.Task | None = None
        self.last_remake: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Desk {self.folder} at {self.url.split('?')[0]}>"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._guard], client_max_size=1024 * 1024)
        app.add_routes([web.get("/", self._page), web.get("/favicon.ico", _nothing), web.get("/api/items", self._items),
                        web.get("/media/{name}", self._media), web.post("/api/decide", self._decide),
                        web.post("/api/remake", self._remake)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self._hosts = {f"127.0.0.1:{bound}", f"localhost:{bound}", f"[::1]:{bound}"}
        self.url = f"http://127.0.0.1:{bound}/?t={self.token}"
        return self.url

    async def stop(self) -> None:
        if self._remaking is not None:
            self._remaking.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the guard: every request -----------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if request.host not in self._hosts or request.headers.get("Sec-Fetch-Site") == "cross-site":
            return _refuse(403, "not served to another site")
        given = request.query.get("t") if request.method == "GET" else request.headers.get("X-Desk-Token")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.removeprefix("http://") not in self._hosts:
                return _refuse(403, "not served to another origin")
            if request.content_type != "application/json":
                return _refuse(415, "JSON only")
        elif given is None:
            given = request.cookies.get(COOKIE)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _refuse(403, "the desk's token is required (open the URL the desk printed)")
        response = await handler(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if "t" in request.query and request.method == "GET":
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    # -- pages and data -----------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        page = _asset("desk.html").replace("{{token}}", self.token).replace("{{css}}", _asset("desk.css")) \
            .replace("{{js}}", _asset("desk.js")).replace("{{folder}}", _html(str(self.folder.resolve())))
        return web.Response(text=page, content_type="text/html", headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
                                       "script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"})

    async def _items(self, request: web.Request) -> web.Response:
        try:
            version = self._version()
        except LedgerError as e:
            return _refuse(500, str(e))
        if request.headers.get("If-None-Match") == version:
            return web.Response(status=304, headers={"ETag": version})
        rows, counts = await asyncio.to_thread(self._rows)
        body = {"items": rows, "counts": counts, "decisions": self.book.counts(), "folder": str(self.folder.resolve()),
                "command": self.command, "can_make_again": self.make_again is not None,
                "remaking": self._remaking is not None and not self._remaking.done(), "last_remake": self.last_remake}
        return web.json_response(body, headers={"ETag": version, "Cache-Control": "no-store"},
                                 dumps=lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))

    def _version(self) -> str:
        """Changes when the ledger or the decisions change: the page asks again only then."""
        parts = []
        for name in (LEDGER_NAME, self.book.path.name):
            try:
                st = (self.folder / name).stat()
                parts.append(f"{st.st_size}-{st.st_mtime_ns}")
            except FileNotFoundError:
                parts.append("0")
        if self._remaking is not None:
            parts.append("r" if not self._remaking.done() else "d")
        return '"' + ".".join(parts) + '"'

    def _rows(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        loaded = read_ledger(self.folder)
        posters = {p.name for p in self.folder.glob("*.jpg")}
        counts: dict[str, int] = {}
        rows = []
        for item in loaded.items.values():
            counts[item.state] = counts.get(item.state, 0) + 1
            decision = self.book.latest.get(item.id)
            media = item.media
            rows.append({
                "id": item.id, "state": item.state, "model": item.request.get("model"),
                "prompt": clean((item.request.get("input") or {}).get("prompt", "")),
                "video": item.state is State.SUCCEEDED and bool(item.video),
                "poster": poster_name(item.id) in posters,
                "reason": item.fail_code, "detail": clean(item.fail_msg or "", limit=300),
                "flags": item.flags or [], "credits": item.credits,
                "media": None if media is None else {"duration": media.duration, "width": media.width,
                                                     "height": media.height, "codec": media.codec, "fps": media.fps},
                "decision": decision.decision if decision else None,
                "new_prompt": decision.prompt if decision else None, "updated_at": item.updated_at,
            })
        return rows, counts

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        stem, _, ext = name.rpartition(".")
        if ext not in ("mp4", "jpg") or unsafe_id_reason(stem):
            return _refuse(404, "no such file")
        path = self.folder / name
        if not path.is_file() or path.is_symlink():
            return _refuse(404, "no such file")
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=60",
                                               "Content-Type": "video/mp4" if ext == "mp4" else "image/jpeg"})

    # -- changes ----------------------------------------------------------------------------
    async def _decide(self, request: web.Request) -> web.Response:
        body = await _json(request)
        item_id, kind, prompt = body.get("id"), _DECISIONS.get(str(body.get("decision"))), body.get("prompt")
        if not isinstance(item_id, str) or unsafe_id_reason(item_id) or kind is None:
            return _refuse(400, "give an item id and a decision: approve, reject, remake or clear")
        item = read_ledger(self.folder).items.get(item_id)
        if item is None:
            return _refuse(404, f"no item {item_id!r} in this folder")
        model = MODELS.get(str(item.request.get("model")), MODELS[PRO])
        if prompt is not None and (why := prompt_problem(prompt, model)):
            return _refuse(400, f"the new prompt {why}")
        if kind == "remake" and item.state is not State.SUCCEEDED:
            return _refuse(400, "only a succeeded video is made again here; `batch-engine retry` re-runs the failed")
        decision = await asyncio.to_thread(self.book.record, item_id, kind, prompt)  # type: ignore[arg-type]
        return web.json_response({"id": item_id, "decision": None if kind == "cleared" else decision.decision,
                                  "decisions": self.book.counts()})

    async def _remake(self, request: web.Request) -> web.Response:
        """Create the tasks of the items queued to make again (confirmed on the page)."""
        body = await _json(request)
        if body.get("confirm") is not True:
            return _refuse(400, "confirm the tasks to create")
        if self.make_again is None:
            return _refuse(409, "this desk cannot create tasks (no API key): run the redo command it shows")
        if self._remaking is not None and not self._remaking.done():
            return _refuse(409, "tasks are being created already")
        queue = {i: d.prompt for i, d in self.book.latest.items() if d.decision == "remake"}
        asked = body.get("ids")
        if isinstance(asked, list):
            queue = {i: p for i, p in queue.items() if i in asked}
        if not queue:
            return _refuse(400, "nothing is queued to make again")
        self._remaking = asyncio.ensure_future(self._run_remake(queue))
        return web.json_response({"creating": len(queue)})

    async def _run_remake(self, queue: Mapping[str, str | None]) -> None:
        assert self.make_again is not None
        try:
            self.last_remake = await self.make_again(queue)
            for item_id in queue:
                await asyncio.to_thread(self.book.record, item_id, "cleared")
        except Exception as e:  # shown on the page; the ledger holds what was done
            log.warning("make again failed: %s", e)
            self.last_remake = {"error": clean(str(e), limit=300)}


async def _nothing(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})


def _asset(name: str) -> str:
    return (resources.files("batch_engine.desk") / "assets" / name).read_text(encoding="utf-8")


def _html(text: str) -> str:
    import html
    return html.escape(text, quote=True)
