"""Only the CLI's lab commands import the lab: `atlas run`, `atlas image`, `atlas serve` and
`atlas topology` work on a machine that runs Atlas without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from atlas.cli import LAB_ROOT, TOPOLOGY
from atlas.lab.config import DEFAULT_ROOT, DEFAULT_TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]

# runs each command line in this one process, then prints their exit codes and every atlas.lab
# module imported by then
PROBE = """
import json, sys
from atlas.cli import app
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        app(argv)
    except SystemExit as e:
        codes.append(e.code)
lab = sorted(m for m in sys.modules if m == "atlas.lab" or m.startswith("atlas.lab."))
print(json.dumps({"codes": codes, "lab": lab}))
"""


def run(*commands: list[str]) -> tuple[list[object], list[str], str]:
    """Exit codes, the lab modules imported, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "NETBOX_", "ATLAS_"))}
    env["ATLAS_SETTINGS"] = "/nonexistent/atlas.toml"  # no Vault: `image list` stops at its settings
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found["codes"], found["lab"], done.stderr


def test_run_image_serve_and_topology_do_not_import_the_lab() -> None:
    codes, lab, stderr = run(
        ["--help"],
        ["run", "bringup", "--help"],
        ["image", "publish", "--help"],
        ["serve", "--help"],
        ["topology", "check", str(DEFAULT_TOPOLOGY)],
        ["image", "list"],
    )
    assert lab == []
    assert codes == [0, 0, 0, 0, 0, 2]  # image list: no Vault in these settings
    assert "VAULT_ADDR: missing" in stderr


def test_the_lab_commands_do() -> None:
    codes, lab, _ = run(["lab", "generate", "--help"])
    assert codes == [0] and "atlas.lab.cli" in lab


def test_the_cli_defaults_are_the_labs() -> None:
    assert LAB_ROOT == DEFAULT_ROOT and TOPOLOGY == DEFAULT_TOPOLOGY
