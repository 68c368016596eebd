"""Outputs and images in a bucket, against a real S3 API on loopback (moto's server mode) behind a
proxy that misbehaves on command: a run to the bucket, resume on a fresh cache, kill -9 then a
fresh machine, the lease, an image the sandbox receives from the bucket, 503 and 403, and no
credential in any file written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import signal
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import API_KEY, FAST, Served, cli_env, run_cli, start_cli, stop, wait_for, write_manifest
from tests.s3 import ACCESS_KEY, SECRET_KEY, Moto, StoreProxy, s3_env

pytest.importorskip("moto")


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto()
    yield server
    server.stop()


@pytest.fixture
def proxy(moto: Moto) -> Iterator[StoreProxy]:
    with StoreProxy(moto.url) as p:
        yield p


def env_for(served: Served, proxy: StoreProxy, **extra: str) -> dict[str, str]:
    return s3_env(cli_env(served, KIE_UPLOAD_BASE_URL=served.sandbox.base_url), proxy.url) | extra


def run_to(url: str, manifest: Path, cache: Path, env: dict[str, str], *extra: str, timeout: float = 120) -> Any:
    return run_cli("run", str(manifest), "--out", url, "--cache", str(cache), "--rate", "200/1s", *FAST, *extra,
                   env=env, timeout=timeout)


def run_when_free(url: str, manifest: Path | None, cache: Path, env: dict[str, str]) -> Any:
    """A scheduler's retry: `run` (or `retry` without a manifest) again while the prefix is leased
    (bounded: 20 s, then the last answer)."""
    deadline = time.monotonic() + 20
    while True:
        if manifest is None:
            done = run_cli("retry", url, "--cache", str(cache), *FAST, env=env, timeout=180)
        else:
            done = run_to(url, manifest, cache, env, timeout=180)
        if done.returncode != 2 or "in use by" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(0.3)


def status_of(url: str, env: dict[str, str]) -> dict[str, Any]:
    done = run_cli("status", url, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def succeeded_only(counts: dict[str, int], n: int) -> bool:
    return counts.get("succeeded") == n and not any(v for k, v in counts.items() if k != "succeeded")


def png(seed: int) -> bytes:
    """A small, whole PNG (its checksums right)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([seed % 256, 40, 200]) * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_run_to_a_bucket_puts_videos_metadata_index_and_ledger_there(serve, moto, proxy, tmp_path):
    served = serve()
    bucket = moto.new_bucket()
    url = f"s3://{bucket}/night/2026-12-04"
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 12)
    done = run_to(url, manifest, tmp_path / "cache", env)
    assert done.returncode == 0, done.stderr
    keys = moto.keys(bucket, "night/2026-12-04/")
    ids = [f"sku-{i:05d}" for i in range(12)]
    creates = served.read(lambda s: list(s.stats.creates))
    report = status_of(url, env)
    task_of = {i["id"]: i["task_id"] for i in report["items"]}
    assert len(creates) == 12 and set(task_of.values()) == {c["task_id"] for c in creates}
    for item_id in ids:
        data = moto.get(bucket, f"night/2026-12-04/{item_id}.mp4")
        card = json.loads(moto.get(bucket, f"night/2026-12-04/{item_id}.json"))
        size, sha = served.read(lambda s, i=item_id: s.expected_video(task_of[i]))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)
        assert card["sha256"] == sha and card["bytes"] == size and card["task_id"] == task_of[item_id]
        assert card["video"] == f"{url}/{item_id}.mp4" and card["prompt"].startswith("Slow dolly-in")
        assert card["model"] and "image_url" in card["settings"]
    rows = list(csv.DictReader(io.StringIO(moto.get(bucket, "night/2026-12-04/index.csv").decode("utf-8-sig"))))
    assert sorted(r["id"] for r in rows) == ids and all(r["video"].startswith(url) for r in rows)
    lines = moto.get(bucket, "night/2026-12-04/index.jsonl").decode().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ids
    assert succeeded_only(json.loads(moto.get(bucket, "night/2026-12-04/summary.json"))["counts"], 12)
    assert any(k.startswith("night/2026-12-04/.batch-engine/ledger/snapshot-") for k in keys)
    assert "night/2026-12-04/.batch-engine.lease" not in keys  # given back at the end
    assert succeeded_only(report["counts"], 12)
    assert {i["video"] for i in report["items"]} == {f"{url}/{i}.mp4" for i in ids}
    # the report goes to the bucket too
    assert run_cli("report", url, env=env).returncode == 0
    assert b"sku-00003" in moto.get(bucket, "night/2026-12-04/report.html")
    # no credential in any file written: the bucket's objects, the cache, the output of the commands
    secrets = [SECRET_KEY.encode(), ACCESS_KEY.encode(), API_KEY.encode()]
    written = [moto.get(bucket, key) for key in moto.keys(bucket)]
    written += [p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    written += [done.stdout.encode(), done.stderr.encode()]
    assert written and not [w for w in written for s in secrets if s in w]


def test_a_fresh_cache_resumes_from_the_bucket_and_pays_for_nothing_again(serve, moto, proxy, tmp_path):
    served = serve(gen_time=(0.3, 0.6))
    bucket = moto.new_bucket()
    url = f"s3://{bucket}/catalog"
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 10)
    first = run_to(url, manifest, tmp_path / "machine-1", env, "--max-tasks", "4")
    assert first.returncode == 0, first.stderr
    second = run_to(url, manifest, tmp_path / "machine-2", env)
    assert second.returncode == 0, second.stderr
    per_item = served.read(lambda s: s.creates_per_item())
    assert len(per_item) == 10 and set(per_item.values()) == {1}
    # a third machine: everything is there, nothing is created or fetched
    third = run_to(url, manifest, tmp_path / "machine-3", env)
    assert third.returncode == 0, third.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 10
    # an object removed from the bucket is fetched again from kie, not paid again
    moto.client().delete_object(Bucket=bucket, Key="catalog/sku-00002.mp4")
    fourth = run_to(url, manifest, tmp_path / "machine-4", env)
    assert fourth.returncode == 0, fourth.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 10
    assert "catalog/sku-00002.mp4" in moto.keys(bucket)


def test_kill_9_then_a_fresh_machine_pays_again_only_for_the_last_seconds(serve, moto, proxy, tmp_path):
    served = serve(gen_time=(3.0, 4.0))
    bucket = moto.new_bucket()
    url = f"s3://{bucket}/kill"
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 60)
    proc = start_cli("run", str(manifest), "--out", url, "--cache", str(tmp_path / "doomed"), "--rate", "10/1s",
                     *FAST, env=env)
    try:
        wait_for(lambda: served.read(lambda s: len(s.stats.creates)) >= 25, timeout=60)
        time.sleep(random.uniform(0.0, 1.0))  # the kill's moment, at any phase of the ledger's sending
    finally:
        killed_at = time.monotonic()  # the sandbox's clock
        stop(proc, signal.SIGKILL)
    before = served.read(lambda s: [dict(c) for c in s.stats.creates])
    done = run_when_free(url, manifest, tmp_path / "fresh", env)
    assert done.returncode == 0, done.stderr
    after = served.read(lambda s: [dict(c) for c in s.stats.creates])
    per_item = served.read(lambda s: s.creates_per_item())
    again = {key for key, n in per_item.items() if n > 1}
    first_create = {c["key"]: c["time"] for c in reversed(before)}
    ages = sorted(killed_at - first_create[key] for key in again)
    last_second = sum(1 for c in before if killed_at - c["time"] <= 1.0)
    print(f"\nkill -9 after {len(before)} creates ({last_second} in its last second): {len(again)} created again, "
          f"each first created {ages[0] if ages else 0:.2f}-{ages[-1] if ages else 0:.2f} s before the kill")
    assert all(age <= 2.5 for age in ages), ages  # only the tasks of the last seconds are paid again
    assert len(per_item) == 60 and len(after) - len(before) <= 60 - len(before) + len(again)
    report = status_of(url, env)
    assert succeeded_only(report["counts"], 60)


def test_a_second_run_on_the_prefix_is_refused_until_the_lease_runs_out(serve, moto, proxy, tmp_path):
    served = serve(gen_time=(30.0, 40.0))
    bucket = moto.new_bucket()
    url = f"s3://{bucket}/leased"
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 3)
    first = start_cli("run", str(manifest), "--out", url, "--cache", str(tmp_path / "a"), *FAST, env=env)
    try:
        wait_for(lambda: served.read(lambda s: len(s.stats.creates)) == 3, timeout=30)
        started = time.monotonic()
        second = run_to(url, manifest, tmp_path / "b", env)
        assert second.returncode == 2, second.stderr
        assert "in use by batch-engine pid" in second.stderr and "until" in second.stderr
        assert time.monotonic() - started < 15  # refused at once, not after waiting
        assert served.read(lambda s: len(s.stats.creates)) == 3
        time.sleep(4)  # the lease (3 s at this time scale) is renewed while the first run lives
        assert run_to(url, manifest, tmp_path / "c", env).returncode == 2
    finally:
        stop(first, signal.SIGKILL)
    served.read(lambda s: setattr(s.settings, "gen_time", (0.2, 0.4)))
    refused = run_to(url, manifest, tmp_path / "d", env)  # the killed run's lease still holds
    assert refused.returncode == 2, refused.stderr
    done = run_when_free(url, manifest, tmp_path / "e", env)
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 3  # resumed: the tasks were polled, not made again


def test_an_image_in_the_bucket_is_checked_then_uploaded_to_kie_never_handed_over(serve, moto, proxy, tmp_path):
    served = serve()
    bucket = moto.new_bucket()
    images = [png(i) for i in range(3)]
    for i, data in enumerate(images):
        moto.client().put_object(Bucket=bucket, Key=f"images/p{i}.png", Body=data)
    moto.client().put_object(Bucket=bucket, Key="images/notes.txt", Body=b"not an image at all")
    env = env_for(served, proxy)

    def manifest(urls: list[str]) -> Path:
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump({"items": [{"id": f"p-{n}", "image_url": u, "prompt": "turn slowly"}
                                                  for n, u in enumerate(urls)]}))
        return path

    bad = run_to(f"s3://{bucket}/out", manifest([f"s3://{bucket}/images/p0.png", f"s3://{bucket}/images/none.png",
                                                 f"s3://{bucket}/images/notes.txt"]), tmp_path / "c0", env)
    assert bad.returncode == 2
    assert "'p-1': image_url: " in bad.stderr and "none.png: no such object" in bad.stderr
    assert "'p-2': image_url: " in bad.stderr and "notes.txt: not a JPEG, PNG or WebP" in bad.stderr
    assert "'p-0'" not in bad.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 0
    urls = [f"s3://{bucket}/images/p{i}.png" for i in (0, 1, 2, 0)]
    read_before = proxy.count("GET", "images/p0.png")
    done = run_to(f"s3://{bucket}/out", manifest(urls), tmp_path / "c1", env)
    assert done.returncode == 0, done.stderr
    uploaded = served.read(lambda s: [bytes(u) for u in s.uploads.values()])
    assert sorted(uploaded) == sorted(images)  # each distinct object once, its very bytes
    # p0, named by two items: its first bytes read once to check it, its whole once to upload it
    assert proxy.count("GET", "images/p0.png") - read_before == 2
    sent = served.read(lambda s: [s.tasks[c["task_id"]].param["input"]["image_url"] for c in s.stats.creates])
    assert len(sent) == 4 and not [u for u in sent if "s3://" in u or "X-Amz" in u or bucket in u]


def test_a_store_that_answers_503_is_retried_and_403_is_refused_before_anything_is_sent(serve, moto, proxy, tmp_path):
    served = serve()
    bucket = moto.new_bucket()
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 4)
    proxy.set(deny=True)
    denied = run_to(f"s3://{bucket}/x", manifest, tmp_path / "c0", env)
    assert denied.returncode == 2
    assert "access denied" in denied.stderr and "Traceback" not in denied.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 0
    missing = run_to("s3://no-such-bucket-here/x", manifest, tmp_path / "c1", env | {"AWS_ENDPOINT_URL": moto.url})
    assert missing.returncode == 2 and "does not exist" in missing.stderr, missing.stderr
    proxy.set(deny=False, fail_next=6, methods=("PUT",))
    done = run_to(f"s3://{bucket}/x", manifest, tmp_path / "c2", env)
    assert done.returncode == 0, done.stderr
    assert proxy.faults.fail_next == 0
    assert len([k for k in moto.keys(bucket, "x/") if k.endswith(".mp4")]) == 4


def test_a_bucket_that_refuses_mid_run_loses_nothing_and_retry_puts_the_local_copies(serve, moto, proxy, tmp_path):
    served = serve(gen_time=(1.5, 2.0))
    bucket = moto.new_bucket()
    url = f"s3://{bucket}/mid"
    env = env_for(served, proxy)
    manifest = write_manifest(tmp_path / "m.yaml", 5)
    cache = tmp_path / "cache"
    proc = start_cli("run", str(manifest), "--out", url, "--cache", str(cache), "--rate", "200/1s", *FAST, env=env)
    try:
        wait_for(lambda: served.read(lambda s: len(s.stats.creates)) == 5, timeout=30)
        proxy.set(deny=True, methods=("PUT", "POST"))
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 1, err
    assert "store_failed" in err or "could not put" in err
    assert "kept in" in err  # the ledger's last lines wait in the cache
    proxy.set(deny=False)
    done = run_when_free(url, None, cache, env)  # the lease could not be given back either
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 5  # nothing paid again
    assert succeeded_only(status_of(url, env)["counts"], 5)
    assert len([k for k in moto.keys(bucket, "mid/") if k.endswith(".mp4")]) == 5


def test_bucket_urls_that_cannot_be_are_refused_with_exit_2(serve, tmp_path):
    served = serve()
    manifest = write_manifest(tmp_path / "m.yaml", 1)
    for bad in ("s3://", "s3://user@bucket/x", "s3://bucket/../x", "s3://bucket/a?b=1"):
        done = run_cli("run", str(manifest), "--out", bad, *FAST, env=cli_env(served))
        assert done.returncode == 2, (bad, done.stderr)
        assert "Traceback" not in done.stderr
    local = run_cli("run", str(manifest), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), *FAST,
                    env=cli_env(served))
    assert local.returncode == 2 and "--cache is for a bucket" in local.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 0
    assert not os.path.exists(tmp_path / "o")
