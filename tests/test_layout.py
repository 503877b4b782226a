"""The three parts stay apart: what deploys (``backup/``), the local runner (``backup/local/``), the test bed.

- ``function_app``, imported in a clean interpreter as the Functions worker would, pulls in nothing of the
  test bed or the local runner;
- no product module imports the test bed; only the local runner imports the local runner; the workflow
  does not import the Functions surface; the Azure clients know nothing of backups;
- the wheel ships the product and the command line, never the test bed or the tests, and asks for no
  test-only dependency (``cryptography`` is the test bed's, for its certificates);
- ``.funcignore`` keeps everything but the Function App out of a publish.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "backup"
LOCAL = PRODUCT / "local"
TESTBED = ROOT / "testbed"
SUB = "00000000-0000-0000-0000-0000000000aa"


def _package(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def _imports(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package(path) if package is None else package
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: Path, *, exclude: Path | None = None) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    return [f for f in files if exclude is None or exclude not in f.parents]


def _offenders(files: list[Path], forbidden: tuple[str, ...], package: str | None = None) -> list[str]:
    bad = []
    for path in files:
        for name in sorted(_imports(path, package)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.name} imports {name}")
    return bad


def test_the_three_parts_are_folders() -> None:
    assert (ROOT / "function_app.py").is_file() and (ROOT / "host.json").is_file()
    assert (PRODUCT / "app" / "blueprint.py").is_file()
    assert (PRODUCT / "workflow" / "orchestrators.py").is_file()
    assert (PRODUCT / "azure" / "compute.py").is_file()
    assert (LOCAL / "cli.py").is_file() and (LOCAL / "durable_host").is_dir()
    assert (TESTBED / "emulator").is_dir() and (TESTBED / "proving_ground.py").is_file()
    assert not (PRODUCT / "emulator").exists() and not (PRODUCT / "durable_host").exists()


def test_the_scan_sees_imports_of_every_form(tmp_path: Path) -> None:
    # The checks below are only as good as _imports: it must see plain, from- and relative imports.
    probe = tmp_path / "probe.py"
    probe.write_text("import testbed.azurite\nfrom backup.local import cli\nfrom ..app import blueprint\n")
    found = _imports(probe, "backup.workflow")
    assert {"testbed.azurite", "backup.local.cli", "backup.app.blueprint"} <= found
    assert _offenders([probe], ("testbed",), "backup.workflow") == ["probe.py imports testbed.azurite"]
    assert "probe.py imports backup.app.blueprint" in _offenders([probe], ("backup.app",), "backup.workflow")


def test_product_code_never_imports_the_test_bed() -> None:
    assert _offenders([*_modules(PRODUCT), ROOT / "function_app.py"], ("testbed", "tests")) == []


def test_only_the_local_runner_imports_the_local_runner() -> None:
    # backup/__main__.py is `python -m backup`, the command line itself: only ever run, never imported.
    product = [p for p in _modules(PRODUCT, exclude=LOCAL) if p.name != "__main__.py"]
    product.append(ROOT / "function_app.py")
    assert _offenders(product, ("backup.local",)) == []


def test_the_workflow_does_not_import_the_functions_surface() -> None:
    assert _offenders(_modules(PRODUCT / "workflow"), ("backup.app", "azure.functions")) == []


def test_the_azure_clients_know_nothing_of_backups() -> None:
    forbidden = ("backup.app", "backup.workflow", "backup.catalog", "backup.clients", "backup.settings")
    assert _offenders(_modules(PRODUCT / "azure"), forbidden) == []


def test_the_product_does_not_import_test_only_packages() -> None:
    test_only = ("cryptography", "azure.storage", "azure.data", "azure.mgmt", "pytest", "hypothesis")
    assert _offenders([*_modules(PRODUCT), ROOT / "function_app.py"], test_only) == []


def test_function_app_imports_nothing_of_the_test_bed_or_the_local_runner() -> None:
    """Import ``function_app`` in a fresh interpreter, as the worker does, and list what it loaded."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BACKUP_", "PYTHONPATH", "AzureWebJobs"))
    }
    env.update(BACKUP_SUBSCRIPTION_ID=SUB, BACKUP_STORAGE_ACCOUNT="backupacct", PYTHONPATH=str(ROOT))
    script = "import json, sys, function_app; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "backup.app.blueprint" in loaded and "backup.workflow.orchestrators" in loaded
    leaked = [m for m in loaded if m.split(".")[0] in ("testbed", "tests") or m.startswith("backup.local")]
    assert leaked == []


def test_runtime_requirements_hold_only_the_four_runtime_packages() -> None:
    wanted = {"azure-functions", "azure-functions-durable", "requests", "azure-identity"}
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.split("==")[0].split(">=")[0].strip().lower())
    assert names == wanted
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert declared == wanted


@pytest.mark.slow
def test_the_wheel_ships_the_product_and_the_cli_but_no_test_bed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("diskbackup-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "backup/app/blueprint.py" in names and "backup/local/cli.py" in names
    assert "backup/local/durable_host/host.py" in names
    assert [n for n in names if n.startswith(("testbed/", "tests/", "bench/"))] == []
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist")
    ]
    assert requires and not any("cryptography" in line for line in requires)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "backup.local.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _funcignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.funcignore`` (gitignore syntax, as the Core Tools read it) leaves ``path`` out."""
    for pattern in patterns:
        if pattern.endswith("/"):
            folder = pattern.rstrip("/")
            if path.startswith(folder + "/") or f"/{folder}/" in f"/{path}":
                return True
        elif fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(Path(path).name, pattern):
            return True
    return False


def test_funcignore_publishes_the_function_app_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    shipped = [path for path in tracked if not _funcignored(path, patterns)]
    for needed in ("function_app.py", "host.json", "requirements.txt", "backup/app/blueprint.py"):
        assert needed in shipped
    assert [p for p in shipped if not p.startswith("backup/")] == [
        "function_app.py",
        "host.json",
        "requirements.txt",
    ]
    assert [p for p in shipped if p.startswith("backup/local/")] == []
    for left_out in ("tests/", "testbed/", "docs/", "node_modules/", ".venv/", ".dev/", ".diskbackup/"):
        assert left_out in patterns, left_out
    assert ".diskbackup/" in (ROOT / ".gitignore").read_text().splitlines()
