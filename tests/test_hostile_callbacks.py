"""The callback receiver faces the internet: a signed callback only
says "look at this task now", and hostile traffic gets short answers, no tracebacks, and bounded
connections, while the run goes on."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from batch_engine.provider.callbacks import sign
from tests.conftest import FAST, hostile_env, ledger_records, start_cli, stop, wait_for, write_manifest
from tests.hostile import ok
from tests.test_callbacks import HMAC_KEY, free_port


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                               **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def signed(task_id: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": sign(HMAC_KEY.encode(), task_id, stamp)}


def start_run(h, tmp_path, port: int, n: int = 1):
    out = tmp_path / "out"
    proc = start_cli("run", str(write_manifest(tmp_path / "m.yaml", n)), "--out", str(out), "--rate", "200/1s",
                     "--callback-url", f"http://127.0.0.1:{port}/cb", "--listen", f"127.0.0.1:{port}", *FAST,
                     env=hostile_env(h, KIE_WEBHOOK_HMAC_KEY=HMAC_KEY))
    wait_for(lambda: len(h.creates) == n and _listening(port), timeout=30)
    return proc, out


def generating_until_told(hostile):
    """A provider whose tasks say "generating" until finished["now"] is set."""
    finished = {"now": False}
    h = hostile()
    h.record = lambda h, task_id: h.success(task_id) if finished["now"] else \
        ok({"taskId": task_id, "state": "generating"})
    return h, finished


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_8_a_signed_callback_is_only_a_hint(hostile, tmp_path):
    """A validly signed callback whose body claims success with other URLs is answered 200, but
    the state comes from recordInfo (still generating): nothing is downloaded from the body's
    URL. Once recordInfo says success, a callback naming the task as `task_id` ends it."""
    h, finished = generating_until_told(hostile)
    port = free_port()
    proc, out = start_run(h, tmp_path, port)
    try:
        task_id = "task0001"
        evil = {"data": {"taskId": task_id, "state": "success",
                         "resultJson": json.dumps({"resultUrls": [f"{h.files_url}/v/evil.mp4"]})}}
        polls = len(h.polls)
        assert post(f"http://127.0.0.1:{port}/cb", json.dumps(evil).encode(), signed(task_id)) == 200
        wait_for(lambda: len(h.polls) > polls, timeout=10)  # the callback made it look now
        assert not h.files, "nothing is fetched from a URL only a callback named"
        assert not (out / "sku-00000.mp4").exists()
        finished["now"] = True
        body = json.dumps({"data": {"task_id": task_id}}).encode()
        assert post(f"http://127.0.0.1:{port}/cb", body, signed(task_id)) == 200
        out_text, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert (out / "sku-00000.mp4").exists()
    assert all("evil" not in headers.get("path", "") for headers in h.files)


def test_9_hostile_traffic_gets_short_answers_and_no_tracebacks(hostile, tmp_path):
    """Deeply nested JSON gets 400; clients that drop mid-body and a flood of held connections
    are handled quietly (no traceback, at most a line a minute) and bounded; the run finishes."""
    h, finished = generating_until_told(hostile)
    port = free_port()
    proc, out = start_run(h, tmp_path, port)
    url = f"http://127.0.0.1:{port}/cb"
    held: list[socket.socket] = []
    try:
        assert post(url, b"[" * 400_000) == 400
        assert post(url, b'{"data": {"taskId": ["x"]}}') == 400
        assert post(url, b"\xff\xfe not utf-8") == 400
        for _ in range(100):  # clients that drop mid-body
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /cb HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"data\"")
        for _ in range(150):  # a flood of connections held open with half a request
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /cb HTTP/1.1\r\nHost: x\r\n")
            held.append(s)

        def closed_by_server() -> int:
            count = 0
            for s in held:
                s.setblocking(False)
                try:
                    count += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    count += 1
            return count
        wait_for(lambda: closed_by_server() >= 150 - 64, timeout=10)  # at most 64 kept open
        finished["now"] = True
        assert post(url, json.dumps({"data": {"taskId": "task0001"}}).encode(), signed("task0001")) == 200
        _, err = proc.communicate(timeout=30)
    finally:
        for s in held:
            s.close()
        stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Error handling request" not in err
    assert err.count("connections from outside failed") <= 2
    assert ledger_records(out)
