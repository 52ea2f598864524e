"""The import contracts in pyproject.toml can fail: a copy of the package with one wrong import
breaks them. (Without this, a contract that names a module that no longer exists, or a
wildcard that matches nothing, would pass forever.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("flush.py", "import ingestd.sim.fleet", "The daemon never imports the simulator"),
        ("mqtt/native.py", "import ingestd.devtools.servers", "The daemon never imports"),
        ("encode.py", "import ingestd.logs", "Pure stages import no I/O"),
        ("source.py", "import paho.mqtt.client", "Only ingestd.mqtt knows aiomqtt and paho"),
        ("mqtt/native.py", "import ingestd.mqtt.paho", "The two MQTT transports are independent"),
    ],
)
def test_a_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(
        ROOT / "ingestd", tree / "ingestd", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert lint_imports(tree).returncode == 0  # the copy as it is keeps every contract
    target = tree / "ingestd" / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), result.stdout[-2000:]
