"""The output folder's file sizes, read by a helper process while a big ledger loads; and a
`retry` with nothing to do, which never loads the HTTP stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from array import array
from pathlib import Path

from hypothesis import given, settings, strategies as st

from batch_engine.pipeline.plan import Step, plan_retry
from batch_engine.store.folder import file_sizes
from batch_engine.store.mark import MARK_NAME
from batch_engine.store.ledger import LEDGER_NAME, Ledger
from batch_engine.store.sizes import HELPER_FROM, FolderSizes, parse


def _odd_folder(folder: Path) -> Path:
    """Regular files of several sizes and names a shell would trip on, and what must not count:
    a link (to a file and to nothing), a sub-folder, a pipe."""
    folder.mkdir()
    for i, name in enumerate(["a.mp4", "with space.mp4", "new\nline.mp4", "ünï.mp4", "-dash", ".hidden"]):
        (folder / name).write_bytes(b"x" * (i * 1000))
    with open(os.path.join(os.fsencode(folder), b"bad-\xff-utf8.mp4"), "wb") as f:
        f.write(b"12345")
    (folder / "link.mp4").symlink_to(folder / "a.mp4")
    (folder / "dangling.mp4").symlink_to(folder / "nowhere")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe")
    return folder


def test_the_helper_reads_the_folder_as_this_process_does(tmp_path):
    folder = _odd_folder(tmp_path / "out")
    sizes = FolderSizes(folder, meanwhile=True)
    got = sizes.result()
    assert sizes.source == "helper"
    assert got == file_sizes(folder)
    assert got["with space.mp4"] == 1000 and got["new\nline.mp4"] == 2000 and os.fsdecode(b"bad-\xff-utf8.mp4") in got
    assert not {"link.mp4", "dangling.mp4", "sub", "pipe"} & got.keys()
    assert sizes.result() is got, "read once"


def test_without_a_helper_the_folder_is_read_here(tmp_path):
    folder = _odd_folder(tmp_path / "out")
    sizes = FolderSizes(folder, meanwhile=False)
    assert sizes.result() == file_sizes(folder) and sizes.source == "here"


def test_a_helper_that_fails_leaves_the_reading_here(tmp_path):
    """The helper exits with an error (not a folder, no folder): the answer is this process's."""
    (tmp_path / "a-file").write_bytes(b"x")
    for path in (tmp_path / "a-file", tmp_path / "missing"):
        sizes = FolderSizes(path, meanwhile=True)
        assert sizes.result() == {} and sizes.source == "here"


def test_a_helper_no_longer_wanted_is_stopped(tmp_path):
    sizes = FolderSizes(_odd_folder(tmp_path / "out"), meanwhile=True)
    helper = sizes._helper
    assert helper is not None
    sizes.cancel()
    assert helper.returncode is not None, "killed and reaped"
    assert sizes.result() == file_sizes(tmp_path / "out") and sizes.source == "here"


def _answer(sizes: dict[str, int]) -> bytes:
    names = os.fsencode("\0".join(sizes))
    return b"%d %d\n" % (len(sizes), len(names)) + array("q", sizes.values()).tobytes() + names


names = st.text(st.characters(blacklist_characters="\0/", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, st.integers(0, 2**62), max_size=20), st.data())
def test_an_answer_is_read_exactly_or_not_at_all(sizes, data):
    """Every answer in the helper's format reads back as it was; any answer cut short, or longer,
    is refused (the folder is then read here)."""
    answer = _answer(sizes)
    assert parse(answer) == sizes
    cut = data.draw(st.integers(0, len(answer) - 1))
    assert parse(answer[:cut]) is None
    assert parse(answer + b"x") is None


def test_an_answer_whose_names_do_not_match_its_sizes_is_refused():
    """Lengths that add up, but two sizes for one name, or an empty name: refused."""
    two = array("q", [1, 2]).tobytes()
    assert parse(b"2 1\n" + two + b"a") is None
    assert parse(b"2 2\n" + two + b"a\0") is None
    assert parse(b"2 3\n" + two + b"a\0b") == {"a": 1, "b": 2}
    assert parse(b"0 0\n") == {} and parse(b"") is None and parse(b"x 0\n") is None


def _big_ledger(out: Path, n: int) -> None:
    """n succeeded items as a run writes them, written straight to the file."""
    out.mkdir()
    with open(out / LEDGER_NAME, "wb") as f:
        for i in range(n):
            f.write(json.dumps({
                "id": f"sku-{i:05d}", "state": "succeeded", "request": {"model": "hailuo/02-image-to-video-pro",
                "input": {"prompt": f"Product {i} turns slowly on a white turntable, soft studio light " * 8,
                          "image_url": f"https://cdn.example.com/{i}.jpg"}}, "fingerprint": f"{i:016x}",
                "task_id": f"{i:032x}", "result_url": f"https://files.example.com/{i}.mp4", "attempts": 1,
                "video": f"sku-{i:05d}.mp4", "bytes": 4, "sha256": f"{i:064x}"}).encode() + b"\n")


def test_a_big_ledger_has_its_folder_read_by_the_helper(tmp_path):
    """Loading a big ledger reads the folder meanwhile; the plan sees a video cut short or gone."""
    out = tmp_path / "out"
    _big_ledger(out, 6000)
    assert (out / LEDGER_NAME).stat().st_size >= HELPER_FROM
    for i in range(6000):
        (out / f"sku-{i:05d}.mp4").write_bytes(b"\0" * 4)
    (out / "sku-00007.mp4").write_bytes(b"\0")
    (out / "sku-00008.mp4").unlink()
    with Ledger(out) as ledger:
        files = ledger.file_sizes()
        assert ledger._sizes is not None and ledger._sizes.source == "helper"
        # the compaction mark is written by the load, after the helper read the folder
        assert files == {name: size for name, size in file_sizes(out).items() if name != MARK_NAME}
        steps = {d.item_id: d.step for d in plan_retry(ledger.items, files, ledger.damaged).decisions}
    assert steps["sku-00007"] is steps["sku-00008"] is Step.REFETCH
    assert sum(step is Step.SKIP for step in steps.values()) == 5998


def test_a_retry_with_nothing_to_do_never_loads_the_http_stack(tmp_path):
    """Every video in place: `retry` plans, reports and exits 0 without importing aiohttp (a fifth
    of a second) or PyYAML (no catalog is read), and sends nothing (the API address is a closed port)."""
    out = tmp_path / "out"
    _big_ledger(out, 20)
    for i in range(20):
        (out / f"sku-{i:05d}.mp4").write_bytes(b"\0" * 4)
    code = ("import runpy, sys\nsys.argv = ['batch-engine', 'retry', sys.argv[1], '-q']\n"
            "try:\n    runpy.run_module('batch_engine', run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code, 'aiohttp' in sys.modules, 'yaml' in sys.modules)\n")
    env = {**os.environ, "KIE_API_KEY": "k", "KIE_BASE_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "exit 0 False False", (done.stdout, done.stderr)
    assert "20 succeeded" in done.stderr and "0 creates sent" in done.stderr


def test_an_interpreter_embedded_in_another_program_gets_no_helper():
    """Only a Python binary is run as the helper (an embedding program's own binary is not)."""
    from batch_engine.store.sizes import _is_python
    assert all(_is_python(p) for p in (sys.executable, "/usr/bin/python3.11", "/venv/bin/python"))
    assert not any(_is_python(p) for p in ("/usr/bin/uwsgi", "", "/opt/app/bin/server"))
