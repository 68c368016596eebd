"""The cron job script runs a manifest, leaves status.json beside the videos, and passes on the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env, write_manifest

JOB = Path(__file__).resolve().parent.parent / "jobs" / "nightly-catalog.sh"


def run_job(env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**env, "PYTHON": sys.executable}  # the Python running the tests has the package
    return subprocess.run(["bash", str(JOB)], env=env, capture_output=True, text=True, timeout=120)


def test_nightly_job_runs_and_leaves_status_json(serve, tmp_path):
    """Every item made, status.json lists them all as succeeded, exit 0."""
    served = serve()
    out = tmp_path / "out"
    env = cli_env(served, MANIFEST=str(write_manifest(tmp_path / "m.yaml", 4)), OUT=str(out), RATE="200/1s")
    done = run_job(env)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "status.json").read_text())
    assert report["counts"]["succeeded"] == 4
    assert all((out / f"{row['id']}.mp4").is_file() for row in report["items"])


def test_nightly_job_passes_on_a_bad_manifest_as_exit_2(serve, tmp_path):
    """A manifest with a problem: exit 2 from the job, nothing sent."""
    served = serve()
    (tmp_path / "m.yaml").write_text("items:\n  - id: a\n")
    env = cli_env(served, MANIFEST=str(tmp_path / "m.yaml"), OUT=str(tmp_path / "out"))
    done = run_job(env)
    assert done.returncode == 2 and "nothing was sent" in done.stderr
    assert "No such file" not in done.stderr and not (tmp_path / "out").exists()
    assert served.read(lambda s: s.stats.create_calls) == 0
