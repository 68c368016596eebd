"""Open a downloaded video and decode its first half second, before it is published: a file that has
an MP4's first bytes but does not decode is no success. PyAV carries FFmpeg's libraries in its
wheel (no system ffmpeg). What the video is (duration, size, codec, frame rate) goes into its
record; the last frame decoded, about 320 px wide, becomes its poster (JPEG)."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

POSTER_WIDTH = 320
FIRST_SECONDS = 0.5   # decoded before the video counts as whole; the poster is the last of them
MAX_FRAMES = 240      # however long "a second" says it is in a hostile file
log = logging.getLogger(__name__)


class Undecodable(Exception):
    """The file does not open or decode as a video: why, in a few words."""


@dataclass(frozen=True, slots=True)
class Probe:
    duration: float   # seconds
    width: int
    height: int
    codec: str
    fps: float
    poster: bytes     # a JPEG


def probe(path: Path) -> Probe:
    """Decode the first half second of the video at `path`; Undecodable when it cannot be."""
    import av
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise Undecodable("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frame = None
            for n, decoded in enumerate(container.decode(stream)):
                frame = decoded
                if n + 1 >= MAX_FRAMES or (decoded.time is not None and decoded.time >= FIRST_SECONDS):
                    break
            if frame is None:
                raise Undecodable("no frame decodes")
            duration = _duration(container, stream)
            rate = stream.average_rate or stream.guessed_rate
            return Probe(duration=duration, width=int(stream.codec_context.width or frame.width),
                         height=int(stream.codec_context.height or frame.height),
                         codec=str(stream.codec_context.name), fps=round(float(rate), 3) if rate else 0.0,
                         poster=_poster(frame))
    except Undecodable:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, ZeroDivisionError) as e:
        raise Undecodable(f"does not decode ({type(e).__name__}: {str(e)[:120]})") from None


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration is not None:
        return round(container.duration / 1_000_000, 3)
    return 0.0


def _poster(frame: Any) -> bytes:
    """The frame as a JPEG about POSTER_WIDTH wide (even sizes, as the encoder wants)."""
    import av
    width = min(POSTER_WIDTH, frame.width) // 2 * 2 or 2
    height = max(2, round(frame.height * width / frame.width) // 2 * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    out = io.BytesIO()
    with av.open(out, "w", format="image2pipe") as image:
        jpeg = image.add_stream("mjpeg", rate=Fraction(1))
        jpeg.width, jpeg.height, jpeg.pix_fmt = width, height, "yuvj420p"
        for packet in jpeg.encode(small):
            image.mux(packet)
        for packet in jpeg.encode(None):
            image.mux(packet)
    return out.getvalue()


def mismatches(request: dict[str, Any], found: Probe) -> list[str]:
    """What differs from what was asked (a 10 s video for 6 s, 768P for 1080P): for the reviewer,
    not a failure."""
    given = request.get("input")
    options: dict[str, Any] = given if isinstance(given, dict) else {}
    flags = []
    asked = _number(options.get("duration"))
    if asked and found.duration and abs(found.duration - asked) > 1.0:
        flags.append(f"{found.duration:g} s long, asked {asked:g} s")
    lines = _number(str(options.get("resolution", "")).upper().removesuffix("P"))
    if lines and abs(min(found.width, found.height) - lines) > 8:
        flags.append(f"{found.width}x{found.height}, asked {int(lines)}P")
    return flags


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 100_000 else None
