"""The run's Config from the environment and the options: the only place that reads the
environment. Every check raises ValueError naming what is wrong (exit 2, before any request)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from batch_engine import logs
from batch_engine.config import (DEFAULT_BASE_URL, DEFAULT_UPLOAD_URL, Config, PollSettings, Rate, check_positive, check_secret,
                                 check_url, parse_listen)


def secrets_from_env() -> tuple[str, ...]:
    return tuple(k for k in (os.environ.get("KIE_API_KEY", "").strip(),
                             os.environ.get("KIE_WEBHOOK_HMAC_KEY", "").strip()) if k)


def build_config(args: argparse.Namespace, *, terminal: bool) -> Config:
    """Sets `args.sandbox` when no key is set (the demo runs against the built-in sandbox)."""
    key = check_secret("KIE_API_KEY", os.environ.get("KIE_API_KEY", "").strip())
    base = os.environ.get("KIE_BASE_URL", "").strip()
    args.sandbox = False
    if not key:
        if base:
            raise ValueError("KIE_BASE_URL is set but KIE_API_KEY is not: set the key for that provider")
        key, args.sandbox = "sandbox-key", True
    base = check_url("KIE_BASE_URL", base) if base else DEFAULT_BASE_URL
    upload = os.environ.get("KIE_UPLOAD_BASE_URL", "").strip()
    upload = check_url("KIE_UPLOAD_BASE_URL", upload) if upload else DEFAULT_UPLOAD_URL
    rate = Rate.parse(args.rate)
    for option in ("poll_rate", "time_scale", "task_timeout", "request_timeout", "download_stall"):
        check_positive("--" + option.replace("_", "-"), getattr(args, option))
    if args.max_tasks is not None and args.max_tasks < 0:
        raise ValueError("--max-tasks must be 0 or more")
    poll = PollSettings(scale=args.time_scale, task_timeout=args.task_timeout * 60,
                        polls_per_second=args.poll_rate)
    listen = None
    if args.callback_url:
        port = urlsplit(check_url("--callback-url", args.callback_url)).port
        listen = parse_listen(args.listen or f"127.0.0.1:{port or 8080}")
    elif args.listen:
        raise ValueError("--listen needs --callback-url (the address kie.ai should call)")
    if args.notify:
        check_url("--notify", args.notify)
    hmac_key = check_secret("KIE_WEBHOOK_HMAC_KEY", os.environ.get("KIE_WEBHOOK_HMAC_KEY", "").strip()) or None
    logs.redact(key)
    if hmac_key:
        logs.redact(hmac_key)
    return Config(api_key=key, out_dir=Path(args.out), base_url=base, upload_url=upload,
                  rate=rate, poll=poll, request_timeout=args.request_timeout,
                  download_stall=args.download_stall, max_tasks=args.max_tasks,
                  show_progress=terminal and not args.quiet,
                  callback_url=args.callback_url, listen=listen, webhook_hmac_key=hmac_key)
