"""Make `.venv` with batch-engine installed in it: the first half of each quick-start command.

    python3 bootstrap.py           the tool (then: .venv/bin/batch-engine ...)
    python3 bootstrap.py --test    the tool and its test dependencies

Why a virtual environment: Debian/Ubuntu's and Homebrew's Python refuse `pip install` outside one
(PEP 668, "externally-managed-environment"). Only the standard library is used here; running it
again reuses `.venv` and installs only what is missing.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def say(text: str) -> None:
    print(f"bootstrap: {text}", file=sys.stderr, flush=True)


def make_venv() -> None:
    if PYTHON.exists() and subprocess.run([str(PYTHON), "-m", "pip", "--version"],
                                          capture_output=True).returncode == 0:
        return
    say(f"creating {VENV.relative_to(ROOT)} (a virtual environment for batch-engine)")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        return
    except (subprocess.CalledProcessError, OSError):
        pass
    # Debian without python3-venv has no ensurepip: an environment without pip, then pip into it
    # from the system's own pip (pip 22.3+ can install into another interpreter).
    venv.EnvBuilder(with_pip=False, clear=True).create(VENV)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(PYTHON), "install",
                           "--quiet", "pip"])
    if done.returncode != 0:
        say("cannot put pip in the virtual environment: install your system's venv support "
            "(Debian/Ubuntu: sudo apt install python3-venv) and run this again")
        sys.exit(2)


def main() -> int:
    if sys.version_info < (3, 11):
        say(f"batch-engine needs Python 3.11 or newer; this is {sys.version.split()[0]}")
        return 2
    make_venv()
    target = ".[test]" if "--test" in sys.argv[1:] else "."
    say(f"installing batch-engine{' and its test dependencies' if target != '.' else ''} into .venv")
    done = subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "-e", target], cwd=ROOT)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
