"""Job files: a manifest, an output folder and the run's options in one YAML file, so that a
cron line or a systemd timer is just `batch-engine run jobs/nightly-catalog.yaml`.

    manifest: ../sample_manifests/catalog.yaml   # relative to this file's folder
    out: ../runs/{date}                          # {date}: today's local date, YYYY-MM-DD
    rate: 20/10s
    max_tasks: 500
    notify: https://hooks.example.com/batch      # POSTed summary.json at the end

A value given on the command line wins over the job's.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_engine.catalog.bucket_images import is_bucket_url
from batch_engine.inputs import read_input
from batch_engine.text import clean

MAX_JOB_BYTES = 1024 * 1024  # a job file names a manifest and options: it is small
# option -> the type its value must have
OPTIONS: dict[str, tuple[type, ...]] = {
    "rate": (str,), "max_tasks": (int,), "shard": (str,), "only": (str, list), "poll_rate": (int, float),
    "task_timeout": (int, float), "request_timeout": (int, float), "download_stall": (int, float),
    "callback_url": (str,), "listen": (str,), "notify": (str,), "log_json": (bool,),
    "credits_per_task": (int, float), "quiet": (bool,), "cache": (str,), "rate_store": (str,),
}


@dataclass(frozen=True, slots=True)
class Job:
    manifest: Path
    out: str  # a folder (relative to the job file), or a bucket URL
    options: dict[str, Any]


def is_job_file(path: Path) -> bool:
    """A YAML file whose top-level keys include `manifest:` and no items of its own. Only the
    top-level keys are looked at (a catalog manifest can be large; it is parsed once, later)."""
    try:
        text = read_input(path, MAX_JOB_BYTES).decode("utf-8-sig", errors="replace")
    except OSError:
        return False
    keys = set(re.findall(r"^([A-Za-z_]+)[ \t]*:", text, re.MULTILINE))
    return "manifest" in keys and not {"items", "items_from"} & keys


def load_job(path: Path, today: datetime.date | None = None) -> tuple[Job | None, list[str]]:
    """The job a job file describes, or every problem with it."""
    from batch_engine.catalog.yamlfile import YamlProblem, read_yaml  # PyYAML: only when a job is read
    try:
        _, data, problems = read_yaml(path, "the job file")
    except YamlProblem as e:
        return None, e.problems
    if not isinstance(data, dict):
        return None, problems + ["the job file must be a mapping (manifest:, out:, and options)"]
    for key in data:
        if key not in ("manifest", "out", *OPTIONS):
            problems.append(f"unknown key {str(key)[:60]!r} (known: manifest, out, {', '.join(OPTIONS)})")
    for key, kinds in OPTIONS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool))):
            problems.append(f"{key}: must be {' or '.join(k.__name__ for k in kinds)}, not {clean(repr(value), limit=80)}")
    for key in ("manifest", "out"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{key}: missing (the path of the {'manifest' if key == 'manifest' else 'output folder'})")
    for key, value in data.items():  # no path, URL or option the OS takes holds one
        if any("\x00" in str(v) for v in (value if isinstance(value, list) else [value])):
            problems.append(f"{clean(str(key), limit=60)}: holds a NUL character")
    if problems:
        return None, problems
    date = (today or datetime.date.today()).isoformat()
    if "{" in data["out"].replace("{date}", ""):
        return None, ["out: the only placeholder is {date}"]
    options = {k: (",".join(map(str, v)) if k == "only" and isinstance(v, list) else v)
               for k, v in data.items() if k in OPTIONS}
    if "cache" in options:  # a folder, relative to the job file like the others
        options["cache"] = str(path.parent / options["cache"].replace("{date}", date))
    out = data["out"].replace("{date}", date)
    return Job(path.parent / data["manifest"], out if is_bucket_url(out) else str(path.parent / out), options), []
