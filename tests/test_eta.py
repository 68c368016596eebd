"""The time left: a pure model of generation time (`pacing.eta`), and a sandbox run whose known
generation times let the test compare the estimate with the time that actually remained."""

from __future__ import annotations

import json
import time

from batch_engine.pacing.eta import Eta, describe, estimate
from tests.conftest import FAST, cli_env, start_cli, stop, write_manifest


def test_nothing_known_nothing_said_and_nothing_left_is_done():
    assert estimate(to_create=5, cap_per_second=2, ages=[], durations=[]) is None
    assert estimate(to_create=0, cap_per_second=2, ages=[], durations=[30.0]) == Eta(0.0, 0.0, 0.0)
    assert describe(None, generating=True).startswith("unknown")


def test_tasks_in_flight_end_when_generations_of_their_age_do():
    seen = [float(s) for s in range(100, 201, 10)]  # 100..200 s
    eta = estimate(to_create=0, cap_per_second=2, ages=[50.0], durations=seen)
    assert eta is not None and 100 <= eta.middle <= 150 and eta.low <= eta.middle <= eta.high
    older = estimate(to_create=0, cap_per_second=2, ages=[150.0], durations=seen)
    assert older is not None and older.middle < eta.middle  # the older task is nearer its end
    done_soon = estimate(to_create=0, cap_per_second=2, ages=[400.0], durations=seen)  # older than any seen
    assert done_soon is not None and done_soon.middle < 60


def test_what_is_left_to_create_is_spaced_by_the_cap():
    seen = [60.0] * 20
    eta = estimate(to_create=200, cap_per_second=2, ages=[], durations=seen)
    assert eta is not None and abs(eta.middle - (100 + 60)) < 1


def test_the_range_narrows_as_times_come_in():
    few = estimate(to_create=0, cap_per_second=2, ages=[10.0], durations=[100.0, 120.0])
    many = estimate(to_create=0, cap_per_second=2, ages=[10.0], durations=[100.0 + i % 20 for i in range(200)])
    assert few is not None and many is not None
    assert (few.high - few.low) / few.middle > (many.high - many.low) / many.middle


def test_no_seconds_are_shown_while_tasks_are_generating():
    assert describe(Eta(0.5, 1.0, 1.5), generating=True) == "under a minute"
    assert describe(Eta(100, 150, 400), generating=True) == "about 1-7 min"
    assert describe(Eta(0.5, 1.0, 1.5), generating=False) == "under 5 s"
    assert describe(Eta(3600, 4000, 9000), generating=True) == "about 1.0-2.5 h"


def test_in_a_run_from_20_percent_done_the_estimate_is_within_25_percent_of_what_remained(serve, tmp_path):
    served = serve(gen_time=(4.0, 6.0))  # 60 items at 5 creates a second: the cap and the generations both count
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path / "m.yaml", 60)
    proc = start_cli("run", str(manifest), "--out", str(out), "--rate", "5/1s", *FAST, env=cli_env(served))
    samples: list[tuple[float, dict]] = []
    deadline = time.monotonic() + 90
    try:
        while proc.poll() is None and time.monotonic() < deadline:  # bounded: 90 s, a sample every 0.1 s
            try:
                samples.append((0.0, json.loads((out / "progress.json").read_text())))
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        ended = time.time()  # the records' clock
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not (out / "progress.json").exists()  # removed at the end of the run
    records = {record["at"]: record for _, record in samples}.values()  # each write once
    judged = [(ended - record["at"], record["eta"]) for record in records
              if record["done"] >= 0.2 * record["total"] and record["eta"] is not None and ended - record["at"] >= 1.0]
    assert len(judged) >= 4
    errors = [abs(eta - left) / left for left, eta in judged]
    print(f"\nETA from 20% done: {len(judged)} samples, worst error {max(errors):.0%}, "
          f"median {sorted(errors)[len(errors) // 2]:.0%}")
    assert max(errors) <= 0.25, [(round(left, 1), eta) for left, eta in judged]
