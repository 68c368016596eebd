"""What decoding each video costs, against what fetching it costs, in one run.

    python bench/decode.py             # a 6 s 1080p H.264 video (made here with PyAV's libx264)

Prints the time `media.probe.probe` takes (open, decode the first half second, make the poster) for
the video, the time to SHA-256 its bytes (work every download already does), and the time the
download itself takes at 10 MB/s and at 50 MB/s (what a worker sees from a CDN).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_engine.media.probe import probe


def make_video(path: Path, seconds: int = 6, width: int = 1920, height: int = 1080, fps: int = 24) -> None:
    """Fresh noise every frame, held to 8 Mbit/s: about the size of a 6 s 1080p generation
    (a few MB), and as much work to decode as any."""
    import av
    grey = bytes([128]) * (width * height // 4)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 8_000_000
        stream.options = {"preset": "ultrafast"}
        for n in range(seconds * fps):
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.planes[0].update(os.urandom(width * height))
            frame.planes[1].update(grey)
            frame.planes[2].update(grey)
            frame.pts = n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.mp4"
        make_video(path)
        size = path.stat().st_size
        probes, hashes = [], []
        for _ in range(5):
            started = time.perf_counter()
            found = probe(path)
            probes.append(time.perf_counter() - started)
            started = time.perf_counter()
            hashlib.sha256(path.read_bytes()).hexdigest()
            hashes.append(time.perf_counter() - started)
    p, h = statistics.median(probes), statistics.median(hashes)
    print(f"video: {found.duration:g} s, {found.width}x{found.height} {found.codec}, {size / 1e6:.1f} MB; "
          f"poster {len(found.poster) / 1e3:.1f} KB")
    print(f"{'row':<46} {'seconds':>9} {'probe / row':>12}")
    print(f"{'probe (decode 0.5 s + poster), median of 5':<46} {p:>9.3f} {1.0:>12.2f}")
    print(f"{'sha256 of its bytes (a download does this)':<46} {h:>9.3f} {p / h:>12.2f}")
    for rate in (10, 50):
        seconds = size / (rate * 1e6)
        print(f"{f'its download at {rate} MB/s':<46} {seconds:>9.3f} {p / seconds:>12.2f}")


if __name__ == "__main__":
    main()
