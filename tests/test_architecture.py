"""The architecture is checked by import-linter: it passes on the tree, and fails when broken."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))  # beside the Python running the tests
if not Path(LINT).exists():
    LINT = shutil.which("lint-imports") or LINT


def lint(tree: Path) -> subprocess.CompletedProcess:
    # run from `tree` with only it on the path, so the package checked is the one in `tree`
    return subprocess.run([LINT, "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "batch_engine", tmp_path / "batch_engine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    """Every contract in pyproject.toml is kept by the package as it is."""
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("pipeline/poll.py", "from batch_engine.pipeline.engine import Run", "The pipeline"),
    ("store/ledger.py", "import aiohttp", "speak HTTP"),
    ("pipeline/context.py", "from batch_engine.sandbox import Sandbox", "imports the sandbox"),
    ("store/folder.py", "from batch_engine.report.console import counts", "Layers"),
], ids=["stage imports the engine", "store speaks HTTP", "pipeline imports the sandbox", "upward import"])
def test_a_deliberate_violation_fails(tmp_path, module, line, contract):
    """Each kind of breach makes lint-imports fail and name the broken contract."""
    tree = copy_tree(tmp_path)
    path = tree / "batch_engine" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(tree)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken) or contract in done.stdout.split("Broken contracts")[-1], done.stdout
