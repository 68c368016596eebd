"""The bucket output against a local folder, on the sandbox and moto's S3 server, in one run.

    python bench/buckets.py              # 200 items each way, and a 256 MB upload
    python bench/buckets.py --items 50 --upload-mb 64

Prints two ratios, and how much the peak memory grew while the large file was put:
- makespan: the same 200-item run (`batch-engine run`, real child processes) to `s3://` against
  a local folder, the sandbox's generations kept short so that the store's cost shows;
- upload throughput: the engine's video put (`BucketVideos.put`: a streaming multipart put, then a
  size check) against obstore's own bulk put of the same file (`obstore.put` from a path), in
  bytes per second.
Needs the test extras (moto[server], boto3).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_engine.config import Rate
from batch_engine.sandbox import SandboxSettings, SandboxThread
from bench.run import manifest
from tests.s3 import ACCESS_KEY, SECRET_KEY, Moto, s3_env

KEY = "bench-key"


def timed_run(out: str, extra: list[str], env: dict[str, str], path: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "batch_engine", "run", str(path), "--out", out, "--rate", "200/1s",
                           "--time-scale", "0.05", "-q", *extra], check=False, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run to {out} failed: {done.stderr[-2000:]}")
    return elapsed


def makespans(moto: Moto, n: int, work: Path) -> tuple[float, float]:
    with SandboxThread(SandboxSettings(api_key=KEY, rate=Rate(200, 1.0), gen_time=(0.2, 0.6),
                                       video_bytes=2 * 1024 * 1024)) as sandbox:
        env = s3_env({k: v for k, v in os.environ.items() if not k.startswith("KIE_")}, moto.url)
        env.update(KIE_API_KEY=KEY, KIE_BASE_URL=sandbox.base_url)
        path = manifest(work / "m.yaml", n)
        local = timed_run(str(work / "local"), [], env, path)
        bucket = moto.new_bucket()
        remote = timed_run(f"s3://{bucket}/run", ["--cache", str(work / "cache")], env, path)
    return local, remote


def throughput(moto: Moto, size_mb: int, work: Path) -> tuple[float, float, float]:
    import obstore
    from obstore.store import S3Store

    from batch_engine.store.bucket import BucketURL, open_bucket
    from batch_engine.store.bucket_videos import BucketVideos

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_ENDPOINT_URL=moto.url,
                      AWS_REGION="us-east-1")
    bucket = moto.new_bucket()
    source = work / "big.bin"
    with open(source, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1024 * 1024))
    size = source.stat().st_size
    store = S3Store(bucket, config={"endpoint": moto.url, "region": "us-east-1"}, client_options={"allow_http": True})
    videos = BucketVideos(open_bucket(BucketURL.parse(f"s3://{bucket}/engine")))  # type: ignore[arg-type]
    bulk, engine = [], []
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for round_ in range(3):  # alternating, the best of three each: the server warms up
        started = time.perf_counter()
        obstore.put(store, f"bulk-{round_}.bin", source)
        bulk.append(size / (time.perf_counter() - started))
        part = work / "part.mp4"
        os.link(source, part)  # put() removes the part once the bucket has it
        started = time.perf_counter()
        videos.put(f"big-{round_}", part, "0" * 64)
        engine.append(size / (time.perf_counter() - started))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    return max(bulk), max(engine), grown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--upload-mb", type=int, default=256)
    args = parser.parse_args()
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            local, remote = makespans(moto, args.items, work)
            bulk, engine, grown = throughput(moto, args.upload_mb, work)
    finally:
        moto.stop()
    print(f"{'row':<58} {'baseline':>12} {'engine':>12} {'ratio':>7}")
    print(f"{f'makespan, {args.items} items of 2 MB: local folder vs s3:// (moto)':<58} "
          f"{local:>11.2f}s {remote:>11.2f}s {remote / local:>7.2f}")
    print(f"{f'upload of {args.upload_mb} MB: obstore.put vs BucketVideos.put':<58} "
          f"{bulk / 1e6:>8.1f}MB/s {engine / 1e6:>8.1f}MB/s {engine / bulk:>7.2f}")
    print(f"peak memory of this process grew {grown:.0f} MB over six puts of {args.upload_mb} MB (streamed, not read whole)")


if __name__ == "__main__":
    main()
