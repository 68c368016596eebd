"""`batch-engine sandbox`: serve the stand-in on loopback until interrupted."""

from __future__ import annotations

import argparse

from rich.console import Console

from batch_engine.config import Rate
from batch_engine.sandbox.settings import Faults, SandboxSettings

OK = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--files-port", type=int, default=8788)
    parser.add_argument("--key", default="sandbox-key", help="the API key it accepts")
    parser.add_argument("--rate", default="20/10s")
    parser.add_argument("--gen-time", default="2-6", help="seconds a task takes, e.g. 2-6")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--limit-style", choices=("status", "body"), default="status")
    parser.add_argument("--retry-after", action="store_true", help="send Retry-After with 429s")
    parser.add_argument("--poll-cap", metavar="N/Ws", help="also answer recordInfo with 429 over this rate")
    parser.add_argument("--window", choices=("sliding", "fixed"), default="sliding",
                        help="how the create cap is counted")
    parser.add_argument("--expire-links", action="store_true",
                        help="result URLs answer 403 until refreshed through download-url")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=RATE",
                        help="inject a fault, e.g. --fault drop=0.05 --fault truncate=0.1 "
                              "--fault unknown_for=2 --fault refuse_code=402 (repeatable)")
    parser.add_argument("--times", choices=("ms", "seconds", "none"), default="ms",
                        help="how recordInfo reports createTime/completeTime/costTime")
    parser.add_argument("--seed", type=int, default=0, help="seeds task outcomes and faults")


def serve(args: argparse.Namespace, console: Console) -> int:
    """Serve until interrupted; ValueError for bad options."""
    import asyncio  # the loop and the HTTP server only when serving (the CLI starts quicker)

    from batch_engine.sandbox.server import Sandbox
    try:
        rate = Rate.parse(args.rate)
        poll_cap = Rate.parse(args.poll_cap) if args.poll_cap else None
        low, _, high = args.gen_time.partition("-")
        gen_time = (float(low), float(high or low))
        faults = Faults(seed=args.seed, **dict(_fault(text) for text in args.fault))  # type: ignore[arg-type]  # each value checked by Faults
    except TypeError as e:
        raise ValueError(str(e)) from None

    async def main() -> None:
        sandbox = Sandbox(SandboxSettings(api_key=args.key, rate=rate, gen_time=gen_time, clips=True,
                                          fail_rate=args.fail_rate, seed=args.seed, faults=faults,
                                          window_kind=args.window, expire_links=args.expire_links,
                                          limit_style=args.limit_style, retry_after=args.retry_after,
                                          poll_cap=poll_cap,
                                          times=args.times))
        await sandbox.start(args.host, args.port, args.files_port)
        console.print(f"sandbox API at {sandbox.base_url}, files at {sandbox.files_url}\n"
                      f"  export KIE_BASE_URL={sandbox.base_url} KIE_UPLOAD_BASE_URL={sandbox.base_url} KIE_API_KEY={args.key}", highlight=False)
        try:
            await asyncio.Event().wait()
        finally:
            await sandbox.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("sandbox stopped")
    return OK


def _fault(text: str) -> tuple[str, float | int]:
    name, _, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if name not in Faults.__dataclass_fields__ or name == "seed" or not value:
        known = ", ".join(f for f in Faults.__dataclass_fields__ if f != "seed")
        raise ValueError(f"--fault {text!r}: expected NAME=VALUE with NAME one of {known}")
    return name, int(value) if name in ("refuse_code", "refuse_after") else float(value)
