"""The run's Config from the environment and the options: the only place that reads the
environment. Every check raises ValueError naming what is wrong (exit 2, before any request)."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace

from batch_engine import logs
from batch_engine.config import DEFAULTS, Config, Environment, build_config, check_url
from batch_engine.store.output import resolve_out

SANDBOX_KEY = "sandbox-key"


def environment() -> Environment:
    return Environment.read(os.environ)


def secrets_from_env() -> tuple[str, ...]:
    return environment().secrets


def config_from_args(args: argparse.Namespace, *, terminal: bool) -> Config:
    """Sets `args.sandbox` when no key is set (the demo runs against the built-in sandbox)."""
    env = environment()
    args.sandbox = False
    if not env.api_key:
        if env.base_url:
            raise ValueError("KIE_BASE_URL is set but KIE_API_KEY is not: set the key for that provider")
        env, args.sandbox = replace(env, api_key=SANDBOX_KEY), True
    if args.notify:
        check_url("--notify", args.notify)
    if args.credits_per_task is not None and not (math.isfinite(args.credits_per_task) and args.credits_per_task >= 0):
        raise ValueError("--credits-per-task must be a number of credits, 0 or more")
    out, folder = resolve_out(args.out, getattr(args, "cache", None))
    shards = int(args.shard.split("/")[1]) if getattr(args, "shard", None) and "/" in args.shard else 1
    config = build_config(folder, {name: getattr(args, name) for name in DEFAULTS}, env,
                          show_progress=terminal and not args.quiet, out=out, shards=shards)
    for secret in env.secrets:
        logs.redact(secret)
    return config
