"""A hostile provider and file host, through the real CLI: what they send never leaks the key,
never names a file, never reaches a terminal raw, never grows without bound, never stalls a run,
and never makes the engine pay twice for a task that succeeded."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest
from aiohttp import web

from batch_engine.errors import BadVideo, RangeNotSatisfiable
from batch_engine.provider.kie import KieProvider
from tests.conftest import FAST, hostile_env, run_cli, write_manifest
from tests.hostile import VIDEO, ok


def run(h, tmp_path: Path, n: int, *extra: str, command: str = "run"):
    out = tmp_path / "out"
    args = ("run", str(write_manifest(tmp_path / "m.yaml", n)), "--out", str(out)) if command == "run" \
        else ("retry", str(out))
    done = run_cli(*args, "--rate", "200/1s", *FAST, *extra, env=hostile_env(h), timeout=90)
    return done, out


def status_of(h, out: Path) -> tuple[dict, str]:
    as_json = run_cli("status", str(out), "--json", env=hostile_env(h))
    table = run_cli("status", str(out), env=hostile_env(h))
    return {row["id"]: row for row in json.loads(as_json.stdout)["items"]}, table.stdout + table.stderr


def everything_written(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".mp4")


def test_1_a_key_echoed_back_is_redacted_everywhere(hostile, tmp_path):
    """A 400 whose message repeats the Authorization header: the key is in no file, no output."""
    h = hostile()
    h.create = lambda n, body: (400, {"code": 400, "msg": f"bad request: you sent Bearer {h.key} !"})
    done, out = run(h, tmp_path, 2)
    assert done.returncode == 1
    rows, table = status_of(h, out)
    assert all(row["state"] == "failed" and "***" in row["fail_msg"] for row in rows.values())
    for text in (done.stdout, done.stderr, table, json.dumps(rows), everything_written(out)):
        assert h.key not in text


def test_2_task_ids_are_data_not_paths(hostile, tmp_path):
    """Ids with '/', '../' or 300 characters never name a file: the first two succeed, the last
    fails alone with its reason, nothing is written outside the folder, and a rerun is calm."""
    h = hostile()
    weird = {1: "../../escaped", 2: "a/b/c", 3: "x" * 300}
    h.task_id = lambda n, body: weird.get(n, f"task{n}")
    done, out = run(h, tmp_path, 5)
    assert done.returncode == 1, done.stderr
    rows, _ = status_of(h, out)
    states = sorted(row["state"] for row in rows.values())
    assert states == ["failed"] + ["succeeded"] * 4
    failed = next(row for row in rows.values() if row["state"] == "failed")
    assert failed["fail_code"] == "bad_task_id" and "unusable task id" in failed["fail_msg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "out"], "nothing outside the folder"
    creates = len(h.creates)
    again, _ = run(h, tmp_path, 5)
    assert again.returncode == 1 and "internal error" not in again.stderr
    assert len(h.creates) == creates, "a rerun pays for nothing"


async def gzip_with_length(request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(VIDEO), headers={"Content-Encoding": "gzip",
                                                            "Content-Type": "video/mp4"})


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Encoding": "gzip", "Content-Type": "video/mp4"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(gzip.compress(bytes(4 * 1024 * 1024)))
    await response.write_eof()
    return response


def test_3_a_video_gzipped_against_the_request_is_decoded_and_kept(hostile, tmp_path):
    """The engine asks for the identity encoding; a host (a CDN) that gzips the video anyway,
    with a Content-Length of the compressed body, still gives the paid video, byte for byte."""
    h = hostile(file=gzip_with_length)
    done, out = run(h, tmp_path, 1)
    assert done.returncode == 0, done.stderr
    assert h.files and all(headers.get("Accept-Encoding") == "identity" for headers in h.files)
    assert (out / "sku-00000.mp4").read_bytes() == VIDEO
    rows, _ = status_of(h, out)
    assert rows["sku-00000"]["bytes"] == len(VIDEO)


def test_3_a_gzipped_body_that_is_no_video_is_refused(hostile, tmp_path):
    """A gzip bomb of zeros decodes to no MP4: no video saved, the item fails as a download
    failure (which `retry` fetches again, without a new task)."""
    h = hostile(file=gzip_bomb)
    done, out = run(h, tmp_path, 1)
    assert done.returncode == 1
    rows, _ = status_of(h, out)
    row = rows["sku-00000"]
    assert row["fail_code"] == "download_failed" and "gzip" in row["fail_msg"]
    assert not list(out.glob("*.mp4"))


async def test_3_a_gzipped_body_past_the_cap_is_cut(hostile):
    """Decoding stays within the size cap that guards every body: a bomb is cut as it grows."""
    h = hostile(file=gzip_bomb)
    async with KieProvider(h.base_url, h.key, user_agent="t", max_file_bytes=100_000) as client:
        with pytest.raises(BadVideo, match="100,000"):
            async with client.open_file(h.video_url("t")) as stream:
                async for _ in stream.chunks:
                    pass


async def test_3_a_body_is_capped(hostile):
    """A file longer than the cap is refused while it streams, whatever the host says."""
    h = hostile()
    async with KieProvider(h.base_url, h.key, user_agent="t", max_file_bytes=1000) as client:
        with pytest.raises(BadVideo, match="1,000"):
            async with client.open_file(h.video_url("t")) as stream:
                async for _ in stream.chunks:
                    pass


def trickle(seconds: float = 6.0):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = len(VIDEO)
        await response.prepare(request)
        try:
            for i in range(int(seconds / 0.2)):  # bounded: a byte every 0.2 s
                await response.write(VIDEO[i:i + 1])
                await asyncio.sleep(0.2)
        except (ConnectionError, RuntimeError):
            pass
        return response
    return handler


def test_4_a_trickling_download_is_cut_resumed_and_failed_then_retried(hostile, tmp_path):
    """A host that trickles bytes is cut after --download-stall, resumed with Range, and after the
    usual tries the item fails as a download failure; `retry` downloads it, creating nothing."""
    h = hostile(file=trickle())
    done, out = run(h, tmp_path, 1, "--download-stall", "0.5")
    assert done.returncode == 1, done.stderr
    rows, _ = status_of(h, out)
    assert rows["sku-00000"]["fail_code"] == "download_failed"
    assert "stalled" in rows["sku-00000"]["fail_msg"]
    assert any("Range" in headers for headers in h.files), "a cut download resumes with Range"
    h.file = None
    creates = len(h.creates)
    again, _ = run(h, tmp_path, 1, command="retry")
    assert again.returncode == 0, again.stderr
    assert len(h.creates) == creates
    assert (out / "sku-00000.mp4").read_bytes() == VIDEO


def test_5_a_success_with_an_unreadable_result_is_never_paid_again(hostile, tmp_path):
    """resultJson that is not JSON fails the item; `retry` reads the record again (no create)."""
    h = hostile()
    h.record = lambda h, task_id: ok({"taskId": task_id, "state": "success", "resultJson": "{not json"})
    done, out = run(h, tmp_path, 1)
    assert done.returncode == 1
    rows, _ = status_of(h, out)
    assert rows["sku-00000"]["fail_code"] == "no_result" and rows["sku-00000"]["retryable"] is True
    h.record = None
    creates = len(h.creates)
    again, _ = run(h, tmp_path, 1, command="retry")
    assert again.returncode == 0, again.stderr
    assert len(h.creates) == creates == 1
    assert (out / "sku-00000.mp4").read_bytes() == VIDEO


def test_6_terminal_escapes_never_reach_a_terminal(hostile, tmp_path):
    """A failMsg with OSC and CSI sequences is stored and shown without a control character."""
    h = hostile()
    h.record = lambda h, task_id: ok({"taskId": task_id, "state": "fail", "failCode": "501",
                                      "failMsg": "\x1b]0;PWNED\x07\x1b[2Jboom\u202e"})
    done, out = run(h, tmp_path, 1)
    assert done.returncode == 1
    _, table = status_of(h, out)
    for text in (done.stdout, done.stderr, table, (out / "ledger.jsonl").read_text()):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "PWNED" in table and "boom" in table


def test_7_message_or_msg_408_and_whether_a_failure_is_worth_a_retry(hostile, tmp_path):
    """recordInfo's `message`, code 408 as a failed task, and retryable for 5xx / "internal error"
    but not for a content-policy refusal: in status --json and in the summary."""
    h = hostile()
    answers = {1: (200, {"code": 408, "message": "no output for 10 minutes"}),
               2: ok({"state": "fail", "failCode": "400", "failMsg": "content policy violation"}),
               3: ok({"state": "fail", "failCode": "500", "failMsg": "internal error, try again later"})}
    h.record = lambda h, task_id: answers[int(task_id[4:])]
    done, out = run(h, tmp_path, 3)
    assert done.returncode == 1
    rows, table = status_of(h, out)
    by_code = {row["fail_code"]: row for row in rows.values()}
    assert by_code["408"]["retryable"] is True and "no output" in by_code["408"]["fail_msg"]
    assert by_code["400"]["retryable"] is False
    assert by_code["500"]["retryable"] is True
    assert "(worth a retry)" in done.stderr and "(not worth retrying as it is)" in done.stderr
    assert "(worth a retry)" in table


def ranged(content_range: str, status: int = 206):
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=VIDEO if status == 206 else b"",
                            headers={"Content-Type": "video/mp4", "Content-Range": content_range})
    return handler


@pytest.mark.parametrize("total", ["\u00b2", "9" * 5000, "-5", " 7"])
async def test_a_range_header_that_is_no_number_is_no_length(hostile, total):
    """Content-Range is the file host's text: a total that is not plain ASCII digits (a
    superscript two passes str.isdigit, five thousand digits pass it too but no int() reads them)
    is taken as unknown, for a 206 and for a 416, never as an error the engine did not expect."""
    h = hostile(file=ranged(f"bytes 0-{len(VIDEO) - 1}/{total}"))
    async with KieProvider(h.base_url, h.key, user_agent="t") as client:
        async with client.open_file(h.video_url("t")) as stream:
            assert stream.total is None and b"".join([chunk async for chunk in stream.chunks]) == VIDEO
    h.file = ranged(f"bytes */{total}", status=416)
    async with KieProvider(h.base_url, h.key, user_agent="t") as client:
        with pytest.raises(RangeNotSatisfiable) as refused:
            async with client.open_file(h.video_url("t"), offset=10):
                pass
        assert refused.value.total is None


def test_a_fail_code_that_is_no_number_fails_the_item_and_nothing_else(hostile, tmp_path):
    """failCode is the provider's text: a superscript two passes str.isdigit but no int() reads
    it; the item fails with the code as given, the run goes on to the others and ends as usual."""
    h = hostile()
    answers = {1: ok({"state": "fail", "failCode": "\u00b2", "failMsg": "odd"}),
               2: ok({"state": "fail", "failCode": "\u0665\u0660\u0660", "failMsg": "odd too"})}
    h.record = lambda h, task_id: answers.get(int(task_id[4:])) or h.success(task_id)
    done, out = run(h, tmp_path, 3)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr
    rows, _ = status_of(h, out)
    states = sorted(row["state"] for row in rows.values())
    assert states == ["failed", "failed", "succeeded"]
    assert {row["fail_code"] for row in rows.values() if row["state"] == "failed"} == {"\u00b2", "\u0665\u0660\u0660"}
    assert all(row["retryable"] is False for row in rows.values() if row["state"] == "failed")
