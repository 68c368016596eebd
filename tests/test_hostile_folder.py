"""The output folder is shared ground: a user's own file is set aside,
planted links are never written through, a hand-edited ledger is input like any other, and a full
disk ends the run with one clear message and nothing half-written."""

from __future__ import annotations

import json
import os
import time

from batch_engine.store.partial import part_path
from tests.conftest import FAST, cli_env, ledger_records, run_cli, status, write_manifest


def args(tmp_path, n: int):
    return ("run", str(write_manifest(tmp_path / "m.yaml", n)), "--out", str(tmp_path / "out"),
            "--rate", "200/1s", *FAST)


def test_12_a_users_own_video_file_is_moved_aside_not_overwritten(serve, tmp_path):
    served = serve()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sku-00000.mp4").write_bytes(b"the user's own cut")
    done = run_cli(*args(tmp_path, 2), env=cli_env(served))
    assert done.returncode == 0, done.stderr
    kept = list((out / ".replaced").glob("sku-00000.*.mp4"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"the user's own cut"
    assert (out / "sku-00000.mp4").read_bytes()[4:8] == b"ftyp"
    assert "was moved to" in done.stderr


def test_13_planted_links_are_never_written_through(serve, tmp_path):
    """A linked lock file is refused (exit 2, target untouched); a linked ledger.jsonl.tmp, a
    linked part file and a linked .replaced/ are replaced or refused, never written through."""
    served = serve()
    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("do not touch")
    (out / ".batch-engine.lock").symlink_to(precious)
    refused = run_cli(*args(tmp_path, 2), env=cli_env(served))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr
    assert precious.read_text() == "do not touch" and served.read(lambda s: s.stats.create_calls) == 0
    (out / ".batch-engine.lock").unlink()

    served.read(lambda s: setattr(s.settings, "file_status", 503))  # every download fails
    (out / "ledger.jsonl.tmp").symlink_to(precious)
    first = run_cli(*args(tmp_path, 2), env=cli_env(served))
    assert first.returncode == 1, first.stderr
    assert precious.read_text() == "do not touch"
    task = {r["id"]: r["task_id"] for r in status(out, cli_env(served))["items"]}
    for item_id, task_id in task.items():
        part = part_path(out, item_id, task_id)
        part.parent.mkdir(exist_ok=True)
        part.unlink(missing_ok=True)
        part.symlink_to(precious)
    (tmp_path / "elsewhere").mkdir()
    served.read(lambda s: setattr(s.settings, "file_status", None))
    retried = run_cli("retry", str(out), "--rate", "200/1s", *FAST, env=cli_env(served))
    assert retried.returncode == 0, retried.stderr
    assert precious.read_text() == "do not touch"
    assert served.read(lambda s: s.stats.create_calls) == 2, "downloads again, never creates again"

    (out / ".replaced").symlink_to(tmp_path / "elsewhere")
    edited = tmp_path / "m.yaml"
    edited.write_text(edited.read_text().replace("product 0,", "product 0 again,"))
    remade = run_cli("run", str(edited), "--out", str(out), "--rate", "200/1s", *FAST, env=cli_env(served))
    assert remade.returncode == 0, remade.stderr
    assert not list((tmp_path / "elsewhere").iterdir()), "nothing moved through the planted link"
    assert (out / ".replaced").is_dir() and not (out / ".replaced").is_symlink()


def test_14_a_hand_edited_ledger_is_validated_and_kept(serve, tmp_path):
    """Ids that climb out of the folder, wrong types and unknown states: nothing is written
    outside, no internal error, the damaged item is not paid for again, and its lines stay."""
    served = serve()
    out = tmp_path / "out"
    assert run_cli(*args(tmp_path, 3), env=cli_env(served)).returncode == 0
    lines = (out / "ledger.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["state"] = "teleported"  # sku-00000's only record now names an unknown state
    bad = [json.dumps(first),
           json.dumps({**json.loads(lines[1]), "id": "../../outside", "state": "failed",
                       "task_id": "t", "result_url": served.sandbox.files_url + "/files/x.mp4"}),
           json.dumps({"id": 5, "state": "failed"}), "{not json"]
    (out / "ledger.jsonl").write_text("\n".join(bad + lines[1:]) + "\n")
    (out / "sku-00001.mp4").unlink()  # so that retry has something to do
    retried = run_cli("retry", str(out), "--rate", "200/1s", *FAST, env=cli_env(served))
    assert "internal error" not in retried.stderr and retried.returncode == 1, retried.stderr
    assert "left alone" in retried.stderr and (out / "sku-00001.mp4").exists()
    rerun = run_cli(*args(tmp_path, 3), env=cli_env(served))
    assert rerun.returncode == 1 and "left alone" in rerun.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "out"]
    assert served.read(lambda s: s.stats.create_calls) == 3, "the damaged item is not paid again"
    text = (out / "ledger.jsonl").read_text()
    assert "teleported" in text and "../../outside" in text and "{not json" in text
    assert "teleported" in (out / "batch-engine.log").read_text()


def test_15_a_full_disk_gives_one_clear_message_and_leaves_no_temp_file(serve, tmp_path):
    """Writes fail (a file size limit, like a full disk) for the ledger and the log as well as the
    videos: one plain message, no logging traceback, no ledger.jsonl.tmp, and the ledger loads."""
    served = serve(video_bytes=64 * 1024)
    out = tmp_path / "out"
    done = run_cli(*args(tmp_path, 30), env=cli_env(served), timeout=60, max_file_bytes=4000)
    assert done.returncode == 1, done.stderr
    assert "cannot write" in done.stderr
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr
    assert not (out / "ledger.jsonl.tmp").exists()
    assert ledger_records(out) and os.path.getsize(out / "ledger.jsonl") <= 4000
    again = run_cli(*args(tmp_path, 30), env=cli_env(served))
    assert again.returncode == 0, again.stderr
    assert served.read(lambda s: s.stats.create_calls) <= 30 + 1


def test_a_fifo_or_a_folder_where_a_file_should_be_never_hangs_a_command(serve, tmp_path):
    """A FIFO (or a folder, or a device) named like one of the folder's files would hang an open
    or a read forever: each is refused or passed over with a message, and no command waits."""
    served = serve()
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "ledger.jsonl")
    for argv in (("status", str(out)), ("status", str(out), "--json"), ("retry", str(out), *FAST)):
        refused = run_cli(*argv, env=cli_env(served), timeout=30)
        assert refused.returncode == 2, (argv, refused.stderr)
        assert "not a regular file" in refused.stderr and "Traceback" not in refused.stderr
    ran = run_cli(*args(tmp_path, 2), env=cli_env(served), timeout=30)
    assert ran.returncode == 2 and "not a regular file" in ran.stderr
    assert served.read(lambda s: s.stats.create_calls) == 0, "nothing is sent from an unusable folder"
    (out / "ledger.jsonl").unlink()

    (out / ".batch-engine.lock").unlink()  # left by the refused run
    os.mkfifo(out / ".batch-engine.lock")
    locked = run_cli(*args(tmp_path, 2), env=cli_env(served), timeout=30)
    assert locked.returncode == 2 and "anything but a file" in locked.stderr
    (out / ".batch-engine.lock").unlink()

    os.mkfifo(out / "durations.jsonl")  # a hint only: the run goes on without it
    os.mkfifo(out / "uploads.jsonl")    # read as none; nothing is uploaded by this catalog
    done = run_cli(*args(tmp_path, 2), env=cli_env(served), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "durations.jsonl" in (out / "batch-engine.log").read_text()
    assert sorted(r["state"] for r in status(out, cli_env(served))["items"]) == ["succeeded", "succeeded"]


def test_a_forged_progress_file_shows_no_run_and_no_figure_it_cannot_be(serve, tmp_path):
    """progress.json is the folder's file, read by `status` for a run in another process: a time
    that is not a number (NaN passes every staleness test) means no run; counts and times that are
    not finite, negative, fractional or past any float are left out, and its text reaches no
    terminal raw."""
    served = serve()
    done = run_cli(*args(tmp_path, 2), env=cli_env(served))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    (out / "progress.json").write_text('{"at": NaN, "done": 1, "total": 2, "eta": 5, "left": "soon"}')
    assert status(out, cli_env(None))["progress"] is None
    text = run_cli("status", str(out), env=cli_env(None))
    assert "going on" not in text.stdout
    (out / "progress.json").write_text('{"at": 1' + "0" * 400 + ', "done": 1}')  # no float holds it
    text = run_cli("status", str(out), env=cli_env(None))
    assert text.returncode == 0 and "going on" not in text.stdout and "error" not in text.stderr
    record = {"at": time.time(), "done": 2.5, "total": 10**400, "eta_low": -1, "eta": 5, "eta_high": 1e400,
              "left": "\x1b[31mforged"}
    (out / "progress.json").write_text(json.dumps(record))  # 1e400: Infinity
    got = status(out, cli_env(None))["progress"]
    assert got["eta"] == 5 and got["done"] is None and got["total"] is None
    assert got["eta_low"] is None and got["eta_high"] is None and "\x1b" not in got["left"]
    text = run_cli("status", str(out), env=cli_env(None))
    assert "going on here: ?/? done" in text.stdout and "\x1b" not in text.stdout
