"""The lab's BMCs through Atlas's Redfish client (Ironic's sushy): what they report is the servers'
hardware record, their power is the servers' machines, a wrong login or a boot source they do not
offer is refused with the reason."""

from __future__ import annotations

import pytest
import requests

from atlas.bmc import BmcError, BmcLogin, BootSource, Power, connect
from atlas.core.model import Device, Site
from atlas.lab import procs
from atlas.lab.lab import Lab


def login(lab: Lab, server: Device, password: str | None = None) -> BmcLogin:
    assert server.oob_address is not None
    return BmcLogin(
        address=server.oob_address.ip,
        username="admin",
        password=password if password is not None else lab.secrets.bmc_password,
        scheme="http",
        timeout=5,
    )


def servers_of(sites: list[Site], site: str) -> list[Device]:
    return [d for s in sites if s.name == site for d in s.devices if d.role.is_server]


def test_every_bmc_reports_its_servers_hardware_and_power(lab: Lab, sites: list[Site]) -> None:
    servers = servers_of(sites, "fra1")
    assert servers
    for server in servers:
        found = connect("redfish", login(lab, server)).inventory()
        hw = lab.fabric.hardware(server.name)
        assert found.serial == hw.serial
        assert found.nics == hw.macs and set(found.nics) == {n.name for n in server.nics}
        assert found.disks == tuple(sorted(hw.disks)) == tuple(sorted(server.disks))
        running = lab.fabric.machine(server.name).pid() is not None
        assert found.power == (Power.ON if running else Power.OFF)
        assert found.boot_sources == (BootSource.DISK, BootSource.PXE, BootSource.HTTP)
        if running:
            assert found.boot_progress == "OSRunning"


def test_a_wrong_login_is_refused_with_the_reason(lab: Lab, sites: list[Site]) -> None:
    server = servers_of(sites, "fra1")[0]
    with pytest.raises(BmcError, match=r"login refused \(401\)"):
        connect("redfish", login(lab, server, password="not-the-password")).inventory()


def test_power_through_the_bmc_stops_and_boots_the_servers_machine(lab: Lab, sites: list[Site]) -> None:
    server = next(d for d in servers_of(sites, "ams1") if d.name == "ams1-r02-cmp2")
    assert server.mgmt_address is not None
    bmc = connect("redfish", login(lab, server))
    machine = lab.fabric.machine(server.name)
    before = machine.pid()
    assert before is not None
    bmc.power_off()
    assert machine.pid() is None and bmc.inventory().power == Power.OFF
    assert lab.fabric.powered_off(server.name)  # it stays off: the lab does not switch it back on
    bmc.power_on(BootSource.DISK)
    assert bmc.inventory().power == Power.ON and machine.pid() not in (None, before)
    machine.wait_booted(server.mgmt_address)
    # the one-time override is used up by that boot, as on a real BMC
    system = requests.get(
        f"{login(lab, server).url}/redfish/v1/Systems/1", auth=("admin", lab.secrets.bmc_password), timeout=5
    ).json()
    assert system["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    assert procs.alive(machine.pid() or 0)
