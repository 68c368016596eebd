"""Inputs from outside, tried as an attacker and a careless user would, through the real CLI:
files that are not files, job files, the upload record, upload-host and provider answers that lie,
`redo --dry-run`, a forged hint file in the folder, a compressed video."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from batch_engine.catalog.images import check_image
from tests.conftest import FAST, cli_env, hostile_env, run_cli, write_manifest
from tests.hostile import ok

SAMPLES = Path(__file__).resolve().parent.parent / "sample_manifests" / "images"


def test_a_catalog_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    """items_from naming a FIFO or a device: exit 2 naming it, at once (never read without end)."""
    os.mkfifo(tmp_path / "c.csv")
    for source in ("c.csv", "/dev/zero"):
        (tmp_path / "m.yaml").write_text(f"items_from: {source}\nprompt_template: 'the {{title}}'\n")
        started = time.monotonic()
        done = run_cli("validate", str(tmp_path / "m.yaml"), env=cli_env(None), timeout=30)
        assert done.returncode == 2, done.stderr
        assert "not a regular file" in done.stderr and "Traceback" not in done.stderr
        assert time.monotonic() - started < 20


def test_a_nul_in_a_job_files_value_is_named_by_its_key(tmp_path):
    """YAML's "\\0" puts a NUL in a string; no path or option holds one: exit 2 naming the key,
    not the OS's bare "embedded null byte"."""
    write_manifest(tmp_path / "m.yaml", 1)
    job = tmp_path / "job.yaml"
    for line, key in (('out: "runs/a\\0b"', "out"), ('cache: "c\\0d"', "cache"), ('only: [a, "b\\0"]', "only")):
        job.write_text(f"manifest: m.yaml\nout: runs/x\n{line}\n".replace("out: runs/x\nout:", "out:"))
        done = run_cli("run", str(job), "--dry-run", env=cli_env(None), timeout=30)
        assert done.returncode == 2 and f"{key}: holds a NUL character" in done.stderr, done.stderr


def test_a_job_file_that_is_not_a_mapping_or_holds_an_alias_bomb_is_refused(tmp_path):
    """A job file gets the manifest's guards: a list at the top, or an alias bomb, is exit 2 with
    a reason, quickly, not an internal error."""
    job = tmp_path / "job.yaml"
    job.write_text("- manifest: m.yaml\n- out: o\n")
    done = run_cli("run", str(job), env=cli_env(None), timeout=30)
    assert done.returncode == 2 and "internal error" not in done.stderr
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, "
        f"*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}]\n"
        for n in range(8))
    job.write_text("manifest: m.yaml\nout: o\n" + bomb)
    started = time.monotonic()
    done = run_cli("run", str(job), env=cli_env(None), timeout=60)
    assert done.returncode == 2 and "alias" in done.stderr, done.stderr
    assert time.monotonic() - started < 30


def _local_catalog(tmp_path: Path) -> Path:
    images = tmp_path / "cat" / "images"
    shutil.copytree(SAMPLES, images)
    path = tmp_path / "cat" / "m.yaml"
    path.write_text("items:\n  - id: a\n    image: images/mug.png\n    prompt: p\n")
    return path


def test_a_forged_upload_record_is_not_believed(hostile, tmp_path):
    """uploads.jsonl lines with a file: or javascript: URL, or a time not finite and in the past,
    are passed over: the image is uploaded again and the create names the upload host's URL."""
    h = hostile()
    manifest, out = _local_catalog(tmp_path), tmp_path / "out"
    out.mkdir()
    sha = check_image(tmp_path / "cat" / "images" / "mug.png").sha256  # type: ignore[union-attr]
    forged = [{"sha256": sha, "path": "x", "url": "file:///etc/passwd", "uploaded_at": time.time()},
              {"sha256": sha, "path": "x", "url": "javascript:alert(1)", "uploaded_at": time.time()},
              {"sha256": sha, "path": "x", "url": "https://evil.test/a.png", "uploaded_at": time.time() + 10**9}]
    (out / "uploads.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forged)
                                       + json.dumps({"sha256": sha, "path": "x", "url": "https://evil.test/b",
                                                     "uploaded_at": math.nan}) + "\n")
    done = run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=hostile_env(h), timeout=90)
    assert done.returncode == 0, done.stderr
    assert len(h.uploads) == 1
    assert h.creates[0]["input"]["image_url"].startswith(h.files_url + "/u/")


def test_an_upload_host_echoing_the_key_gets_it_written_nowhere(hostile, tmp_path):
    """A downloadUrl holding the API key is refused: the key reaches neither uploads.jsonl nor the
    ledger, and the item fails as an upload failure (nothing created)."""
    h = hostile(upload=lambda h, name: ok({"downloadUrl": f"{h.files_url}/u/{name}?key={h.key}"}))
    manifest, out = _local_catalog(tmp_path), tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=hostile_env(h), timeout=90)
    assert done.returncode == 1
    assert not h.creates
    for path in out.iterdir():
        if path.is_file():
            assert h.key not in path.read_text(errors="replace"), path.name


def test_an_image_replaced_after_validation_is_not_uploaded_under_the_old_hash(hostile, tmp_path):
    """The bytes uploaded are the bytes checked: an end image replaced (by one over 10 MB) after
    the run validated it, while the first image was being uploaded, is refused at its upload;
    the item fails, nothing is created, and the new file is never sent."""
    images = tmp_path / "cat" / "images"
    shutil.copytree(SAMPLES, images)
    manifest = tmp_path / "cat" / "m.yaml"
    manifest.write_text("items:\n  - {id: a, image: images/mug.png, end_image: images/lamp.png, prompt: p}\n")

    def upload(h, name: str) -> tuple[int, dict]:  # the first upload: the end image is swapped meanwhile
        (images / "lamp.png").write_bytes((SAMPLES / "lamp.png").read_bytes() + bytes(11 * 1024 * 1024))
        return ok({"downloadUrl": f"{h.files_url}/u/{name}"})

    h = hostile(upload=upload)
    out = tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=hostile_env(h), timeout=90)
    assert done.returncode == 1, done.stderr
    assert len(h.uploads) == 1 and not h.creates
    rows = {row["id"]: row for row in json.loads(run_cli("status", str(out), "--json", env=hostile_env(h)).stdout)["items"]}
    assert rows["a"]["state"] == "failed" and rows["a"]["fail_code"] == "image_changed"


def test_an_image_is_judged_by_its_structure_not_its_first_bytes(tmp_path):
    """A PNG signature followed by anything, or a JPEG start with no scan, is no image: exit 2."""
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"<script>" * 100)
    (tmp_path / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    (tmp_path / "m.yaml").write_text("items:\n  - {id: a, image: fake.png, prompt: p}\n  - {id: b, image: fake.jpg, prompt: p}\n")
    done = run_cli("validate", str(tmp_path / "m.yaml"), env=cli_env(None), timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("not a JPEG, PNG or WebP image") == 2


def test_non_finite_numbers_from_the_provider_are_a_problem_of_one_answer_only(hostile, tmp_path):
    """NaN, infinities and absurd numbers in createTask and recordInfo answers: the run goes on,
    each task is created once and followed, every video arrives."""
    def create(n: int, body: dict) -> tuple[int, dict]:
        return 200, {"code": math.nan if n == 1 else 200, "msg": "ok",
                     "data": {"taskId": f"task{n}", "costTime": math.inf, "createTime": -1e300}}

    def record(h, task_id: str) -> tuple[int, dict]:
        status, answer = h.success(task_id)
        answer["data"].update(costTime=math.nan, createTime=math.inf, completeTime=1e308, creditsConsumed=-math.inf)
        return status, answer

    h = hostile(create=create, record=record)
    out = tmp_path / "out"
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(out), "--rate", "200/1s", *FAST,
                   env=hostile_env(h), timeout=90)
    assert done.returncode == 0, done.stderr
    assert len(h.creates) == 3
    again = run_cli("run", str(tmp_path / "m.yaml"), "--out", str(out), "--rate", "200/1s", *FAST, env=hostile_env(h))
    assert again.returncode == 0 and len(h.creates) == 3


def test_redo_dry_run_creates_nothing_and_moves_nothing(serve, tmp_path):
    """`redo --dry-run` says what would be made again; no task, the video stays where it was."""
    served = serve()
    out = tmp_path / "out"
    first = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 2)), "--out", str(out), "--rate", "200/1s",
                    *FAST, env=cli_env(served))
    assert first.returncode == 0
    creates = len(served.read(lambda s: s.stats.creates))
    before = (out / "sku-00000.mp4").read_bytes()
    done = run_cli("redo", str(out), "sku-00000", "--dry-run", "--yes", *FAST, env=cli_env(served))
    assert done.returncode == 0 and "dry run" in done.stderr + done.stdout
    assert len(served.read(lambda s: s.stats.creates)) == creates == 2
    assert (out / "sku-00000.mp4").read_bytes() == before and not (out / ".replaced").exists()
    priced = run_cli("redo", str(out), "sku-00000", "sku-00001", "--dry-run", "--credits-per-task", "45",
                     env=cli_env(served))
    assert priced.returncode == 0 and "estimate: 90 credits" in priced.stdout + priced.stderr
    bad = run_cli("redo", str(out), "sku-00000", "--dry-run", "--rate", "fast", env=cli_env(served))
    assert bad.returncode == 2 and len(served.read(lambda s: s.stats.creates)) == 2


def test_a_forged_hint_file_in_the_folder_does_not_change_what_status_says(serve, tmp_path):
    """status reads the ledger itself: a planted `.batch-engine.compact` (or any stray file) beside
    it cannot make it show an item's older state."""
    served = serve()
    out = tmp_path / "out"
    assert run_cli("run", str(write_manifest(tmp_path / "m.yaml", 2)), "--out", str(out), "--rate", "200/1s",
                   *FAST, env=cli_env(served)).returncode == 0
    ledger = out / "ledger.jsonl"
    first = json.loads(ledger.read_text().splitlines()[0])
    with open(ledger, "a") as f:  # an older line of the item, after the compacted part
        f.write(json.dumps({"id": first["id"], "state": "failed", "fail_code": "x"}) + "\n")
        f.write(json.dumps({"id": first["id"], "state": "succeeded"}) + "\n")
    (out / ".batch-engine.compact").write_text(json.dumps({"device": 0, "inode": 0, "length": ledger.stat().st_size,
                                                           "tail": "0" * 64}))
    rows = json.loads(run_cli("status", str(out), "--json", env=cli_env(served)).stdout)["items"]
    assert {row["id"]: row["state"] for row in rows} == {"sku-00000": "succeeded", "sku-00001": "succeeded"}


def test_a_fifo_in_place_of_the_log_or_the_summary_never_hangs_a_command(serve, tmp_path):
    """batch-engine.log or summary.json planted as FIFOs: the run goes on (the log to the console
    only) and `report` reads past the summary, none of them waiting on the FIFO."""
    served = serve()
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "batch-engine.log")
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 1)), "--out", str(out), "--rate", "200/1s",
                   *FAST, env=cli_env(served), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cannot write the log file" in done.stderr
    (out / "summary.json").unlink()
    os.mkfifo(out / "summary.json")
    assert run_cli("report", str(out), env=cli_env(served), timeout=60).returncode == 0


def test_every_option_a_dry_run_accepts_is_checked_or_said_unused(tmp_path):
    """A dry run checks the run's options as a run would (exit 2 for a bad one) and says which
    options it does not use; a bad --credits-per-task is refused too."""
    manifest = str(write_manifest(tmp_path / "m.yaml", 2))
    out = str(tmp_path / "out")
    bad = run_cli("run", manifest, "--out", out, "--dry-run", "--rate", "fast", env=cli_env(None))
    assert bad.returncode == 2 and "rate" in bad.stderr
    price = run_cli("run", manifest, "--out", out, "--dry-run", "--credits-per-task", "-3", env=cli_env(None))
    assert price.returncode == 2 and "--credits-per-task" in price.stderr
    noted = run_cli("run", manifest, "--out", out, "--dry-run", "--notify", "https://hooks.example.com/x",
                    env=cli_env(None))
    assert noted.returncode == 0 and "--notify not used" in noted.stdout + noted.stderr
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_a_url_from_outside_must_be_a_plain_http_url_without_the_key():
    """What a provider or an upload host gives as a URL is kept only if it is http(s), has a host,
    holds no white space, control character or secret (percent-encoded or not)."""
    from urllib.parse import quote

    from batch_engine.text import outside_url
    key = "sk/live+key=1"
    assert outside_url("https://cdn.example.com/v.mp4", (key,)) == "https://cdn.example.com/v.mp4"
    for url in ("file:///etc/passwd", "javascript:alert(1)", "https://", "https://x/a b", "https://x/\x1b[31m",
                f"https://x/?k={key}", f"https://x/?k={quote(key, safe='')}", "http://[::1/", "https://user:pw@x/v.mp4", 5, None):
        assert outside_url(url, (key,)) is None, url
