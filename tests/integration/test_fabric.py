"""The fabric built from NetBox: real FRR switches over SSH, real LLDP, real server hosts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from atlas.core.model import Device, Site
from atlas.lab.lab import Lab
from atlas.net.lldp import CablingProblem, Neighbours, check_cabling
from atlas.net.platforms import platform_of
from atlas.net.sessions import lldp_neighbours, ssh_exec, switch_cli
from atlas.secrets import Vault


def switches(sites: list[Site]) -> list[Device]:
    return [d for s in sites for d in s.devices if d.role.is_switch]


def servers(sites: list[Site]) -> list[Device]:
    return [d for s in sites for d in s.devices if d.role.is_server]


def test_every_switch_answers_netmiko_with_credentials_from_openbao(sites: list[Site], vault: Vault) -> None:
    def probe(device: Device) -> tuple[str, str]:
        cred = vault.credential(device.site, device.role.value)
        with switch_cli(device, cred, platform_of(device).device_type) as cli:
            return cli.find_prompt(), cli.send_command("show running-config")

    devices = switches(sites)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = dict(zip((d.name for d in devices), pool.map(probe, devices), strict=True))
    assert len(answers) == 13
    for name, (prompt, running) in answers.items():
        assert prompt == f"{name}#"
        assert f"hostname {name}" in running
        # switches come up with management only: configuring them is the flows' job
        assert "router ospf" not in running and "ip address" not in running


def test_lldp_neighbours_of_every_device_match_the_netbox_cables(sites: list[Site], vault: Vault) -> None:
    devices = [d for s in sites for d in s.devices]
    cables = list({frozenset(c.ends()): c for s in sites for c in s.cables}.values())

    def neighbours(device: Device) -> Neighbours:
        return lldp_neighbours(device, vault.credential(device.site, device.role.value))

    problems: list[CablingProblem] = []
    deadline = time.monotonic() + 45  # lldpd sends every 5 s; a fresh lab needs a round or two
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(max_workers=6) as pool:
            observed = dict(zip((d.name for d in devices), pool.map(neighbours, devices), strict=True))
        problems = check_cabling(cables, observed)
        if not problems:
            break
        time.sleep(2)
    assert problems == []
    assert sum(len(n) for n in observed.values()) == 2 * len(cables) == 90


def test_what_a_server_changes_in_its_files_only_it_sees(lab: Lab, sites: list[Site], vault: Vault) -> None:
    first, second = servers(sites)[:2]
    cred = vault.credential(first.site, first.role.value)
    marker = f"/etc/atlas-lab-test-{first.name}"
    assert ssh_exec(first, cred, f"echo {first.name} > {marker} && cat {marker}").strip() == first.name
    assert ssh_exec(first, cred, "hostname").strip() == first.name
    assert ssh_exec(second, cred, f"test -e {marker} && echo seen || echo absent").strip() == "absent"
    assert ssh_exec(first, cred, "ls /sys/class/net").split() == ["eth0", "eth1", "eth2", "lo"]
    assert not Path(marker).exists()
