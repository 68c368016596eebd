"""The sizes of the files in the output folder, read while the ledger is read.

Planning compares every succeeded item's video with the size the ledger recorded (a video cut
short or replaced is fetched again), so a folder of 100,000 videos costs 100,000 `stat` calls:
about 0.3 s of system calls that this process cannot overlap with reading the ledger (a thread
doing them waits for the interpreter lock after each one). For a big ledger they are made by a
helper process on another core instead, started as soon as the folder is locked (this
interpreter, isolated, with no site packages: about 15 ms to start; not when Python is embedded
in another program), and collected when the plan needs them. A helper that cannot start, fails,
or answers anything but its exact format is ignored and the folder read here instead: the same
answer, later. The helper repeats `folder.file_sizes` in a few lines rather than importing it:
importing the package would cost it more than the reading.
"""

from __future__ import annotations

import os
import subprocess
import sys
from array import array
from pathlib import Path

from batch_engine.store.folder import file_sizes

HELPER_FROM = 4 * 1024 * 1024  # bytes of ledger (about 5,000 items) from which a helper pays
HELPER_WAIT = 120.0            # seconds the helper may take before the folder is read here

# The helper: what `folder.file_sizes` does, answered as "<count> <length of the names>\n", the
# sizes as 8-byte integers, then the names (as the file system has them) joined by NUL, which no
# name holds.
_HELPER = r"""
import os, sys
from array import array
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
with os.scandir(fd) as entries:
    names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
sizes, found = array("q"), []
for name in names:
    try:
        sizes.append(os.stat(name, dir_fd=fd, follow_symlinks=False).st_size)
    except OSError:
        continue
    found.append(name)
names = os.fsencode("\0".join(found))
sys.stdout.buffer.write(b"%d %d\n" % (len(found), len(names)) + sizes.tobytes() + names)
"""


class FolderSizes:
    """`folder.file_sizes(folder)`, read by a helper process meanwhile when `meanwhile` (and the
    helper can be started), else here when `result()` is first asked for."""

    __slots__ = ("folder", "source", "_helper", "_result")

    def __init__(self, folder: Path, *, meanwhile: bool) -> None:
        self.folder = folder
        self.source = ""  # once read: "helper" or "here"
        self._helper: subprocess.Popen[bytes] | None = None
        self._result: dict[str, int] | None = None
        if meanwhile and _is_python(sys.executable):
            try:
                self._helper = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _HELPER, os.fspath(folder)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError:
                self._helper = None

    def __repr__(self) -> str:
        return f"<FolderSizes {self.folder} helper running={self._helper is not None} read={self.source or 'not yet'}>"

    def result(self) -> dict[str, int]:
        """Name -> size of the regular files directly in the folder."""
        if self._result is None:
            found = self._from_helper()
            self._result, self.source = (found, "helper") if found is not None else (file_sizes(self.folder), "here")
        return self._result

    def cancel(self) -> None:
        """Stop a helper whose answer is no longer wanted."""
        helper, self._helper = self._helper, None
        if helper is not None:
            _stop(helper)

    def _from_helper(self) -> dict[str, int] | None:
        helper, self._helper = self._helper, None
        if helper is None:
            return None
        try:
            out, _ = helper.communicate(timeout=HELPER_WAIT)
        except subprocess.TimeoutExpired:
            _stop(helper)
            return None
        return parse(out) if helper.returncode == 0 else None


def _stop(helper: subprocess.Popen[bytes]) -> None:
    helper.kill()
    helper.communicate()  # reaped: no zombie left


def _is_python(executable: str) -> bool:
    """Whether `executable` is a CPython interpreter by its name (python, python3, python3.11,
    python.exe): an application embedding Python (uwsgi, say) has its own binary there."""
    return os.path.basename(executable).lower().startswith("python")


def parse(answer: bytes) -> dict[str, int] | None:
    """The helper's answer as name -> size, or None if it is not exactly in its format."""
    head, newline, rest = answer.partition(b"\n")
    count, _, length = head.partition(b" ")
    if not (newline and count.isdigit() and length.isdigit()):
        return None
    sizes = array("q")
    split = int(count) * sizes.itemsize
    if len(rest) != split + int(length):
        return None
    sizes.frombytes(rest[:split])
    text = os.fsdecode(rest[split:])
    names = text.split("\0") if text else []
    if len(names) != len(sizes) or "" in names:
        return None
    return dict(zip(names, sizes))
