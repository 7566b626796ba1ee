"""The wheel carries the configs, so an installed `adrun` needs no source tree (adrun.cli.config_dir)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_config_file(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("adrun-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("adrun/conf/")}
    expected = {f"adrun/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert expected and expected <= shipped


def test_every_test_tool_is_pinned_and_every_library_bounded():
    """constraints.txt (used by the README's test command and .ci/run) pins each dev tool exactly and bounds each
    dependency below a major version, so a new release cannot change what the suite runs against unnoticed."""
    import re

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", line.strip()).groups()
            constraints[name.lower()] = spec

    def name(requirement: str) -> str:
        return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()

    for tool in map(name, project["optional-dependencies"]["dev"]):
        assert constraints.get(tool, "").startswith("=="), f"{tool} is not pinned in constraints.txt"
    for library in map(name, project["dependencies"]):
        assert "<" in constraints.get(library, ""), f"{library} has no upper bound in constraints.txt"
    assert all("-c constraints.txt" in (ROOT / f).read_text() for f in ("README.md", ".ci/run"))
