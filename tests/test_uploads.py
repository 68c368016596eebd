"""Local images: checked before anything is sent, uploaded once per content, re-used
while young, uploaded again when changed or older than 24 hours."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import FAST, cli_env, ledger_records, run_cli

SAMPLES = Path(__file__).resolve().parents[1] / "sample_manifests" / "images"


def catalog(tmp_path: Path, items: list[dict]) -> Path:
    import yaml
    path = tmp_path / "cat" / "m.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"items": items}))
    return path


def env(served):
    return cli_env(served, KIE_UPLOAD_BASE_URL=served.sandbox.base_url)


def run(served, manifest: Path, out: Path):
    return run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=env(served))


def test_each_distinct_file_is_uploaded_once_and_reused_until_it_changes_or_ages(serve, tmp_path):
    served = serve()
    images = tmp_path / "cat" / "images"
    shutil.copytree(SAMPLES, images)
    manifest = catalog(tmp_path, [
        {"id": "a", "image": "images/lamp.png", "prompt": "p"},
        {"id": "b", "image": "images/lamp.png", "end_image": "images/mug.png", "prompt": "p"},
        {"id": "c", "image": "images/chair.png", "prompt": "p"}])
    out = tmp_path / "out"
    first = run(served, manifest, out)
    assert first.returncode == 0, first.stderr
    assert len(served.read(lambda s: s.stats.uploads)) == 3, "lamp, mug, chair: once each"
    sent = served.read(lambda s: [c for c in s.stats.creates])
    assert len(sent) == 3
    bodies = served.read(lambda s: [t.param["input"]["image_url"] for t in s.tasks.values()])
    assert all(url.startswith(served.sandbox.files_url + "/uploads/") for url in bodies)
    assert all(r["request"]["input"]["image_url"].startswith("upload:") for r in ledger_records(out))

    (out / "a.mp4").unlink()  # a rerun re-downloads, and uploads nothing
    assert run(served, manifest, out).returncode == 0
    assert len(served.read(lambda s: s.stats.uploads)) == 3

    (images / "chair.png").write_bytes((images / "chair.png").read_bytes() + b"edited")  # still a PNG
    edited = run(served, manifest, out)
    assert edited.returncode == 0, edited.stderr
    assert "item c: changed in the manifest" in edited.stderr
    assert len(served.read(lambda s: s.stats.uploads)) == 4, "only the changed file again"

    records = [json.loads(line) for line in (out / "uploads.jsonl").read_text().splitlines()]
    aged = [dict(r, uploaded_at=r["uploaded_at"] - 25 * 3600) for r in records]
    (out / "uploads.jsonl").write_text("".join(json.dumps(r) + "\n" for r in aged))
    manifest.write_text(manifest.read_text().replace("prompt: p", "prompt: q"))  # every item anew
    again = run(served, manifest, out)
    assert again.returncode == 0, again.stderr
    assert len(served.read(lambda s: s.stats.uploads)) == 4 + 3, "uploads older than 24 h are made again"


def test_bad_local_files_are_each_named_and_nothing_is_sent(serve, tmp_path):
    served = serve()
    folder = tmp_path / "cat"
    folder.mkdir()
    (folder / "text.png").write_text("not an image at all")
    (folder / "big.jpg").write_bytes(b"\xff\xd8\xff" + bytes(11 * 1024 * 1024))
    manifest = catalog(tmp_path, [
        {"id": "a", "image": "text.png", "prompt": "p"},
        {"id": "b", "image": "big.jpg", "prompt": "p"},
        {"id": "c", "image": "missing.webp", "prompt": "p"},
        {"id": "d", "image": "text.png", "image_url": "https://x.test/1.jpg", "prompt": "p"}])
    done = run(served, manifest, tmp_path / "out")
    assert done.returncode == 2
    assert "'a': image:" in done.stderr and "not a JPEG, PNG or WebP image" in done.stderr
    assert "'b': image:" in done.stderr and "at most 10 MB" in done.stderr
    assert "'c': image:" in done.stderr and "no such file" in done.stderr
    assert "'d': image_url and image: give one of them" in done.stderr
    assert served.read(lambda s: (len(s.stats.uploads), s.stats.create_calls)) == (0, 0)
    assert not (tmp_path / "out").exists()


def test_a_dry_run_uploads_nothing(serve, tmp_path):
    served = serve()
    shutil.copytree(SAMPLES, tmp_path / "cat" / "images")
    manifest = catalog(tmp_path, [{"id": "a", "image": "images/lamp.png", "prompt": "p"}])
    done = run_cli("run", str(manifest), "--out", str(tmp_path / "out"), "--dry-run", env=env(served))
    assert done.returncode == 0 and "1 new" in done.stderr
    assert served.read(lambda s: (len(s.stats.uploads), s.stats.create_calls)) == (0, 0)


def test_retry_uploads_again_from_the_recorded_path_when_the_upload_aged(serve, tmp_path):
    """retry works from the output folder alone: an expired upload is made again from where the
    file was read, if it still holds the same bytes."""
    served = serve(fail_rate=1.0)
    shutil.copytree(SAMPLES, tmp_path / "cat" / "images")
    manifest = catalog(tmp_path, [{"id": "a", "image": "images/mug.png", "prompt": "p"}])
    out = tmp_path / "out"
    assert run(served, manifest, out).returncode == 1
    records = [json.loads(line) for line in (out / "uploads.jsonl").read_text().splitlines()]
    (out / "uploads.jsonl").write_text("".join(json.dumps(dict(r, uploaded_at=0)) + "\n" for r in records))
    served.read(lambda s: setattr(s.settings, "fail_rate", 0.0))
    retried = run_cli("retry", str(out), "--rate", "200/1s", *FAST, env=env(served))
    assert retried.returncode == 0, retried.stderr
    assert len(served.read(lambda s: s.stats.uploads)) == 2


async def test_an_unreachable_upload_host_is_a_transient_failure_not_an_unreadable_file(tmp_path):
    """A refused connection (an OSError inside aiohttp) is retried as transient; only a file that
    cannot be opened is refused as unreadable."""
    import socket

    import pytest

    from batch_engine.errors import Rejected, Transient
    from batch_engine.provider.kie import KieProvider
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    image = tmp_path / "a.png"
    shutil.copy(SAMPLES / "lamp.png", image)
    async with KieProvider("http://127.0.0.1:9", "k", user_agent="t", upload_url=f"http://127.0.0.1:{closed}") as client:
        with pytest.raises(Transient) as e:
            await client.upload(image.read_bytes(), "a.png")
        assert not isinstance(e.value, Rejected)
