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


def test_a_job_file_runs_with_a_date_folder_and_leaves_summary_json(serve, tmp_path):
    """`batch-engine run JOB.yaml`: the manifest and out relative to the job file, {date} filled
    in, the job's options used, summary.json beside the videos, a failing --notify hook only logged."""
    import datetime

    from tests.conftest import FAST, run_cli
    served = serve()
    (tmp_path / "jobs").mkdir()
    write_manifest(tmp_path / "catalog.yaml", 3)
    (tmp_path / "jobs" / "nightly.yaml").write_text(
        "manifest: ../catalog.yaml\nout: ../runs/{date}\nrate: 200/1s\nmax_tasks: 2\n"
        "notify: http://127.0.0.1:9/nobody-listens\n")
    done = run_cli("run", str(tmp_path / "jobs" / "nightly.yaml"), *FAST, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / datetime.date.today().isoformat()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["succeeded"] == 2 and len(summary["left_by_budget"]) == 1
    assert served.read(lambda s: s.stats.create_calls) == 2
    assert "could not notify" in done.stderr
    bad = tmp_path / "jobs" / "bad.yaml"
    bad.write_text("manifest: ../catalog.yaml\nout: x\nmax_tasks: many\nspeed: 3\n")
    refused = run_cli("run", str(bad), env=cli_env(served))
    assert refused.returncode == 2
    assert "max_tasks: must be int" in refused.stderr and "unknown key 'speed'" in refused.stderr


def test_log_json_gives_one_json_object_a_line(serve, tmp_path):
    from batch_engine.sandbox import Faults
    from tests.conftest import FAST, run_cli
    served = serve(faults=Faults(extra_state=1.0))  # logs a warning about the undocumented state
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 1)), "--out", str(tmp_path / "out"),
                   "--rate", "200/1s", "--log-json", *FAST, env=cli_env(served))
    lines = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "message"} <= json.loads(line).keys() for line in lines)
    assert any("undocumented state" in json.loads(line)["message"] for line in lines)
