"""The lab switch's login shell (atlas/lab/switch-shell.sh) passes on only the commands a switch's shell
would: its CLI and show commands, each argument as sent, nothing evaluated. Run with the programs it
would start replaced by one that prints its arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from atlas.lab.network import SWITCH_SHELL
from atlas.net.platforms.frr import FRR, vtysh
from atlas.net.routing.ospf import OSPF


@pytest.fixture
def shell(tmp_path: Path) -> Path:
    text = SWITCH_SHELL.read_text()
    for program in ("/usr/bin/vtysh", "/usr/sbin/lldpcli"):
        assert f"exec {program} " in text
        text = text.replace(f"exec {program} ", f"exec {tmp_path / 'show-args'} {Path(program).name} ")
    (tmp_path / "show-args").write_text('#!/bin/sh\nprintf "[%s]" "$@"\n')
    (tmp_path / "show-args").chmod(0o755)
    (tmp_path / "switch-shell").write_text(text)
    return tmp_path / "switch-shell"


def login(shell: Path, command: str) -> tuple[int, str]:
    done = subprocess.run(
        ["sh", str(shell), "/run/x", "/etc/frr"],
        env={"SSH_ORIGINAL_COMMAND": command, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout


CONF = "[--vty_socket][/run/x][--config_dir][/etc/frr]"


@pytest.mark.parametrize(
    ("command", "runs"),
    [
        ("vtysh -c 'show ip route json'", f"[vtysh]{CONF}[-c][show ip route json]"),
        (
            "vtysh -c 'show ip ospf neighbor json' -c 'show running-config'",
            f"[vtysh]{CONF}[-c][show ip ospf neighbor json][-c][show running-config]",
        ),
        (
            "vtysh -c 'show $(reboot)'",
            f"[vtysh]{CONF}[-c][show $(reboot)]",
        ),  # vtysh refuses it; no shell runs it
        ("lldpcli -f json0 show neighbors", "[lldpcli][-f][json0][show][neighbors]"),
    ],
)
def test_show_commands_reach_their_program_as_sent(shell: Path, command: str, runs: str) -> None:
    assert login(shell, command) == (0, runs)


def test_the_reads_the_frr_platform_sends_reach_vtysh_as_sent(shell: Path) -> None:
    for commands in [
        (*FRR.routing_commands(OSPF), FRR.running_config_command),
        (FRR.running_config_command,),
        (FRR.daemons_command,),
    ]:
        assert login(shell, vtysh(*commands)) == (
            0,
            f"[vtysh]{CONF}" + "".join(f"[-c][{c}]" for c in commands),
        )


@pytest.mark.parametrize(
    "command",
    [
        "vtysh -c 'show a'; reboot'",
        "vtysh -c 'show a' -c 'b'c'",
        "vtysh -c 'show a' ; -c 'b'",
        "vtysh -c 'show a' -c 'unclosed",
        "bash -c 'id'",
        "lldpcli update",
    ],
)
def test_anything_else_is_refused_before_any_program_runs(shell: Path, command: str) -> None:
    code, out = login(shell, command)
    assert code == 1 and out == ""
