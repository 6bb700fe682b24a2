"""rack-bringup end to end in the lab: real NetBox, FRR switches over SSH, LLDP, Ansible on hosts,
OpenBao and the lab's Prefect server. The tests run in file order: each leaves the lab as the next
one expects (fra1's racks brought up, ams1's left planned for the fault cases)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pynetbox
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from atlas.core.model import InterfaceKind, Site
from atlas.core.run import poll_until
from atlas.images.catalog import ARTIFACT
from atlas.lab import procs
from atlas.lab.firmware import INSTALLED
from atlas.lab.images import OS_IMAGE_VERSION
from atlas.lab.lab import Lab
from atlas.net.sessions import ssh_exec
from atlas.prefect.locks import rack_limit_name
from atlas.runbooks.bringup import PreflightError
from atlas.runbooks.fabric import SelectionError
from atlas.secrets import Vault
from flows.config_sweep import config_sweep
from flows.fabric import fabric_apply
from flows.rack_bringup import BringupFailed, rack_bringup
from tests.e2e.runs import held_back, kill_when

pytestmark = pytest.mark.usefixtures("flow_env")
ROOT = Path(__file__).resolve().parents[2]


def running_configs(lab: Lab, devices: list[str]) -> dict[str, str]:
    return {d: lab.fabric.vtysh(d, "show running-config") for d in devices}


def site(sites: list[Site], name: str) -> Site:
    return next(s for s in sites if s.name == name)


def test_bad_netbox_data_is_refused_before_any_device_is_touched(lab: Lab, nb: pynetbox.api) -> None:
    iface = nb.dcim.interfaces.get(device="fra1-r02-leaf1", name="swp3")
    before = running_configs(lab, ["fra1-r02-leaf1", "fra1-spine1"])
    iface.description = "to cmp1\nwrite erase"
    iface.save()
    try:
        with pytest.raises(PreflightError) as info:
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    finally:
        iface.description = ""
        iface.save()
    assert "fra1-r02-leaf1:swp3 description" in str(info.value)
    assert "control characters" in str(info.value)
    assert running_configs(lab, ["fra1-r02-leaf1", "fra1-spine1"]) == before
    assert "write erase" not in lab.fabric.vtysh("fra1-r02-leaf1", "show running-config")


def host_addresses(lab: Lab, server: str) -> str:
    return procs.run([*lab.fabric.nsenter(server), "ip", "-4", "-br", "addr"], "addresses").stdout


def refused_and_nothing_changed(lab: Lab) -> str:
    """The bring-up of fra1-r02 refused by preflight, every switch and host as before; its message."""
    switches = ["fra1-r02-leaf1", "fra1-r02-leaf2", "fra1-spine1", "fra1-spine2"]
    before = running_configs(lab, switches), host_addresses(lab, "fra1-r02-cmp1")
    with pytest.raises(PreflightError) as info:
        rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert (running_configs(lab, switches), host_addresses(lab, "fra1-r02-cmp1")) == before
    return str(info.value)


def refused_with_address(lab: Lab, nb: pynetbox.api, device: str, interface: str, address: str) -> str:
    """`refused_and_nothing_changed` while NetBox gives the interface `address`; NetBox restored after."""
    ip = nb.ipam.ip_addresses.get(interface_id=nb.dcim.interfaces.get(device=device, name=interface).id)
    old, ip.address = ip.address, address
    ip.save()
    try:
        return refused_and_nothing_changed(lab)
    finally:
        ip.address = old
        ip.save()


def test_a_server_address_off_its_link_and_outside_the_fabric_prefix_is_refused_by_preflight(
    lab: Lab, nb: pynetbox.api
) -> None:
    message = refused_with_address(lab, nb, "fra1-r02-cmp1", "eth1", "198.19.201.9/31")
    assert "fra1-r02-cmp1:eth1: fabric address 198.19.201.9/31 lies in no prefix of role fabric" in message
    assert "fra1-r02-cmp1:eth1: its ends are not in one subnet" in message


def test_a_management_address_outside_the_management_prefix_is_refused_by_preflight(
    lab: Lab, nb: pynetbox.api
) -> None:
    message = refused_with_address(lab, nb, "fra1-r02-cmp2", "eth0", "198.19.200.7/24")
    assert (
        "fra1-r02-cmp2:eth0: management address 198.19.200.7/24 lies in no prefix of role management"
        in message
    )


def cabled(nb: pynetbox.api, a: tuple[str, str], b: tuple[str, str]) -> Any:
    """A cable NetBox records between two interfaces (the caller deletes it)."""
    ends = [nb.dcim.interfaces.get(device=d, name=i) for d, i in (a, b)]
    return nb.dcim.cables.create(
        a_terminations=[{"object_type": "dcim.interface", "object_id": ends[0].id}],
        b_terminations=[{"object_type": "dcim.interface", "object_id": ends[1].id}],
    )


def test_a_cable_from_a_leaf_to_another_sites_switch_is_refused_as_leaving_the_site(
    lab: Lab, nb: pynetbox.api
) -> None:
    cable = cabled(nb, ("fra1-r02-leaf1", "swp30"), ("ams1-spine1", "swp30"))
    try:
        message = refused_and_nothing_changed(lab)
    finally:
        cable.delete()
    assert (
        "cable fra1-r02-leaf1:swp30 - ams1-spine1:swp30 leaves site fra1 for ams1-spine1 of site ams1 "
        "(role spine): only the core joins sites" in message
    )


def test_a_cable_between_two_leaves_is_refused_as_a_link_the_fabric_does_not_have(
    lab: Lab, nb: pynetbox.api
) -> None:
    cable = cabled(nb, ("fra1-r02-leaf1", "swp31"), ("fra1-r01-leaf1", "swp31"))
    try:
        message = refused_and_nothing_changed(lab)
    finally:
        cable.delete()
    assert (
        "cable fra1-r02-leaf1:swp31 - fra1-r01-leaf1:swp31 joins leaf fra1-r02-leaf1 to leaf fra1-r01-leaf1: "
        "a leaf is cabled to compute or spine or storage in this fabric" in message
    )


def test_fabric_apply_refuses_a_spine_address_outside_the_fabric_prefix_and_pushes_nothing(
    lab: Lab, nb: pynetbox.api
) -> None:
    ip = nb.ipam.ip_addresses.get(interface_id=nb.dcim.interfaces.get(device="fra1-spine1", name="swp1").id)
    old, ip.address = ip.address, "198.19.202.0/31"
    ip.save()
    spines = ["fra1-spine1", "fra1-spine2"]
    before = running_configs(lab, spines)
    try:
        with pytest.raises(SelectionError) as info:
            fabric_apply(site="fra1", dry_run=False)
    finally:
        ip.address = old
        ip.save()
    assert running_configs(lab, spines) == before
    assert "fra1-spine1:swp1: fabric address 198.19.202.0/31 lies in no prefix of role fabric" in str(
        info.value
    )
    assert "its ends are not in one subnet" in str(info.value) and "fra1-spine1:swp1 198.19.202.0/31" in str(
        info.value
    )


def test_a_dry_run_reports_the_diff_and_changes_nothing(lab: Lab, nb: pynetbox.api) -> None:
    devices = ["fra1-r01-leaf1", "fra1-r01-leaf2", "fra1-spine1", "fra1-spine2"]
    before = running_configs(lab, devices)
    report = rack_bringup(site="fra1", rack="fra1-r01", dry_run=True)
    assert report.dry_run and report.failed == 0
    leaf = next(r for r in report.rows if r["device"] == "fra1-r01-leaf1")
    assert leaf["result"] == "changed" and int(leaf["changes"]) > 10
    assert "dry run" in leaf["detail"]
    assert running_configs(lab, devices) == before
    assert report.netbox_changes == []


def test_swapped_cable_is_named_and_stops_the_rack_before_any_config(lab: Lab, sites: list[Site]) -> None:
    ams1 = site(sites, "ams1")
    uplinks = sorted(
        (c for c in ams1.cables_of("ams1-r02-leaf1") if "spine" in c.a.device), key=lambda c: str(c.a)
    )
    first, second = uplinks[:2]
    crossed = lab.fabric.swap_cables(first, second)
    try:
        time.sleep(6)  # one LLDP advertisement interval
        with pytest.raises(BringupFailed) as info:
            rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    finally:
        lab.fabric.swap_cables(*crossed)
    message = str(info.value)
    assert "cabling differs from NetBox" in message
    assert (
        f"ams1-r02-leaf1:{first.b.interface}" in message and f"ams1-r02-leaf1:{second.b.interface}" in message
    )
    for leaf in ("ams1-r02-leaf1", "ams1-r02-leaf2"):
        assert "router ospf" not in lab.fabric.vtysh(leaf, "show running-config")


def set_serial(lab: Lab, server: str, serial: str) -> None:
    """What the server's BMC will report: its vendor's serial as if another box were in the slot."""
    hw = lab.fabric.hardware(server)
    hw.serial = serial
    hw.save(lab.fabric.node_dir(server))


def netbox_macs(nb: pynetbox.api, servers: list[str]) -> dict[tuple[str, str], str]:
    return {
        (str(i.device.name), str(i.name)): str(i.primary_mac_address.mac_address).lower()
        for i in nb.dcim.interfaces.filter(device=servers)
        if i.primary_mac_address
    }


R02_SERVERS = ["fra1-r02-cmp1", "fra1-r02-cmp2", "fra1-r02-sto1"]


def test_servers_whose_bmcs_disagree_with_netbox_are_named_before_anything_is_powered(
    lab: Lab, nb: pynetbox.api, sites: list[Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    cmp1, cmp2, sto1 = R02_SERVERS
    assert lab.power(cmp2, on=False)  # racked, powered off: the bring-up switches it on (next test)
    leaves = ["fra1-r02-leaf1", "fra1-r02-leaf2"]
    before = running_configs(lab, leaves)
    serials = {n: lab.fabric.hardware(n).serial for n in R02_SERVERS}
    # cmp1 and cmp2 racked in each other's slot, and a box NetBox never received in sto1's
    set_serial(lab, cmp1, serials[cmp2])
    set_serial(lab, cmp2, serials[cmp1])
    set_serial(lab, sto1, "XX-NOT-RECEIVED")
    try:
        with pytest.raises(BringupFailed) as info:
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    finally:
        for name, serial in serials.items():
            set_serial(lab, name, serial)
    message = str(info.value)
    assert "nothing was powered or changed" in message
    assert f"{cmp1}: its BMC reports serial {serials[cmp2]!r}, which NetBox records for {cmp2}" in message
    assert f"{cmp2}: its BMC reports serial {serials[cmp1]!r}, which NetBox records for {cmp1}" in message
    assert f"{sto1}: its BMC reports serial 'XX-NOT-RECEIVED', which NetBox does not know" in message
    # sto1's BMC off the network: named, and the run waits no longer than the BMC timeout says
    bmc = site(sites, "fra1").device(sto1).oob_address  # type: ignore[union-attr]
    assert bmc is not None
    monkeypatch.setenv("ATLAS_BMC_TIMEOUT", "2")
    lab.bmc.unplug(bmc)
    try:
        with pytest.raises(BringupFailed) as info:
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    finally:
        lab.bmc.plug(bmc)
    assert f"{sto1}: BMC did not answer: BMC {bmc.ip}: connecting:" in str(info.value)
    assert cmp1 not in str(info.value) and cmp2 not in str(info.value)
    # nothing anywhere was changed: the server that was off is off, NetBox learnt no MAC, no switch
    assert lab.fabric.machine(cmp2).pid() is None
    assert netbox_macs(nb, R02_SERVERS) == {}
    assert running_configs(lab, leaves) == before


def test_a_planned_rack_comes_up_and_is_recorded(lab: Lab, nb: pynetbox.api) -> None:
    first = rack_bringup(site="fra1", rack="fra1-r01", dry_run=False)  # the active rack, so r02 has a peer
    assert first.failed == 0
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.failed == 0
    results = {r["device"]: r["result"] for r in report.rows}
    assert results["fra1-r02-leaf1"] == results["fra1-r02-cmp1"] == "changed"
    details = {r["device"]: r["detail"] for r in report.rows}
    assert "powered on (boot from disk)" in details["fra1-r02-cmp2"], details  # it was off
    assert "already on" in details["fra1-r02-cmp1"], details
    # the brand-new servers' MACs, as their BMCs reported them, are in NetBox now
    assert netbox_macs(nb, R02_SERVERS) == {
        (name, nic): mac for name in R02_SERVERS for nic, mac in lab.fabric.hardware(name).macs.items()
    }
    for name in ("fra1-r02-leaf1", "fra1-r02-leaf2", "fra1-r02-cmp1", "fra1-r02-sto1"):
        device = nb.dcim.devices.get(name=name)
        assert device.status.value == "active"
        journal = nb.extras.journal_entries.filter(
            assigned_object_type="dcim.device", assigned_object_id=device.id
        )
        assert any("rack-bringup" in e.comments for e in journal)
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "active"
    neighbours = lab.fabric.vtysh("fra1-r02-leaf1", "show ip ospf neighbor")
    assert neighbours.count("Full") == 4  # both spines, and both compute servers (they announce anycast)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rack-bringup-fra1-fra1-r02-devices"]))
        )
    assert artifacts and any("fra1-r02-cmp1" in str(a.data) for a in artifacts)


def test_the_second_run_changes_nothing_and_says_so(lab: Lab) -> None:
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.changed == 0 and report.failed == 0
    assert {r["result"] for r in report.rows} == {"unchanged"}
    assert report.netbox_changes == []


def test_nics_swapped_between_two_powered_off_servers_are_named_and_after_the_fix_both_are_powered_on(
    lab: Lab,
) -> None:
    cmp1, cmp2 = R02_SERVERS[:2]
    for name in (cmp1, cmp2):
        assert lab.power(name, on=False)
    macs = {name: lab.fabric.hardware(name).macs["eth1"] for name in (cmp1, cmp2)}
    lab.fabric.swap_nics(cmp1, cmp2, "eth1")
    try:
        with pytest.raises(BringupFailed) as info:
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    finally:
        lab.fabric.swap_nics(cmp1, cmp2, "eth1")
    message = str(info.value)
    assert (
        f"{cmp1}:eth1 has MAC {macs[cmp2]}, which NetBox holds for {cmp2}:eth1 "
        f"(NICs swapped between {cmp1} and {cmp2}?)" in message
    )
    assert f"{cmp2}:eth1 has MAC {macs[cmp1]}, which NetBox holds for {cmp1}:eth1" in message
    assert all(lab.fabric.machine(name).pid() is None for name in (cmp1, cmp2)), "nothing was powered"
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)  # the cards back where they were
    assert report.failed == 0, report.rows
    changed = {r["device"]: r["detail"] for r in report.rows if r["result"] == "changed"}
    assert set(changed) == {cmp1, cmp2}, report.rows
    assert all("powered on (boot from disk)" in detail for detail in changed.values()), changed
    again = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert again.changed == 0 and again.failed == 0, again.rows  # no server powered or booted


def boot_id(lab: Lab, server: str) -> str:
    return procs.run(
        [*lab.fabric.nsenter(server), "cat", "/proc/sys/kernel/random/boot_id"], "boot id"
    ).stdout


def test_every_server_of_the_rack_comes_back_from_a_power_cycle_as_it_was(
    lab: Lab, sites: list[Site], vault: Vault
) -> None:
    fra1 = site(sites, "fra1")
    servers = [d for d in fra1.devices if d.rack == "fra1-r02" and d.role.is_server]
    booted = {s.name: boot_id(lab, s.name) for s in servers}
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: lab.reboot(s.name), servers))
    assert all(boot_id(lab, s.name) != booted[s.name] for s in servers), "every server booted again"
    for leaf in ("fra1-r02-leaf1", "fra1-r02-leaf2"):
        # both spines and both compute servers, whose FRR came back by itself (frr.service)
        full = poll_until(
            lambda leaf=leaf: lab.fabric.vtysh(leaf, "show ip ospf neighbor").count("Full"),
            lambda n: n == 4,
            timeout=60,
        )
        assert full == 4, lab.fabric.vtysh(leaf, "show ip ospf neighbor")
    for server in servers:
        cred = vault.credential("fra1", server.role.value)
        addresses = ssh_exec(server, cred, "ip -4 -o addr show")
        for iface in server.interfaces:
            if iface.kind == InterfaceKind.OOB:
                continue  # the BMC's address: on the out-of-band network, not the host's
            for address in iface.addresses:
                assert str(address) in addresses, (server.name, iface.name, addresses)
        assert ssh_exec(server, cred, "ip -4 route show default").count("nexthop via") == 2
        for service in server.anycast:  # announced again: each leaf routes it to the server
            route = lab.fabric.vtysh("fra1-r02-leaf1", f"show ip route {service.ip}")
            assert "ospf" in route.lower() and "Known via" in route, route
    swept = config_sweep(sites=["fra1"], areas=["hosts"])
    assert not any(r.changed or r.failed for r in swept), [r for r in swept if r.changed or r.failed]
    again = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert again.changed == 0 and again.failed == 0, again.rows


def test_a_host_changed_by_hand_is_the_only_one_the_rerun_changes(sites: list[Site], vault: Vault) -> None:
    host = site(sites, "fra1").device("fra1-r02-cmp1")
    assert host is not None
    cred = vault.credential("fra1", "compute")
    # a file, a live route and a live kernel parameter: each put right by what applies it at boot
    ssh_exec(
        host,
        cred,
        "echo by-hand > /etc/hostname; ip route del default; sysctl -qw net.ipv4.conf.all.rp_filter=2",
    )
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    rows = {r["device"]: r for r in report.rows}
    assert rows["fra1-r02-cmp1"]["result"] == "changed", rows["fra1-r02-cmp1"]
    assert {r["result"] for name, r in rows.items() if name != "fra1-r02-cmp1"} == {"unchanged"}
    assert ssh_exec(host, cred, "cat /etc/hostname").strip() == "fra1-r02-cmp1"
    assert "nexthop via" in ssh_exec(host, cred, "ip -4 route show default")
    assert ssh_exec(host, cred, "cat /proc/sys/net/ipv4/conf/all/rp_filter").strip() == "0"


def test_a_switch_without_ssh_fails_the_run_cleanly_and_a_rerun_completes(lab: Lab, nb: pynetbox.api) -> None:
    assert lab.fabric.stop_sshd("ams1-r01-leaf2")
    try:
        with pytest.raises(BringupFailed, match="ams1-r01-leaf2: SSH"):
            rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)
    finally:
        lab.fabric.start_sshd("ams1-r01-leaf2")
    report = rack_bringup(site="ams1", rack="ams1-r01", dry_run=False)
    assert report.failed == 0
    assert nb.dcim.devices.get(name="ams1-r01-leaf2").status.value == "active"


def test_two_runs_for_one_rack_are_never_inside_its_critical_section_together(lab: Lab) -> None:
    """Two flow runs in two processes, as two workers would run them, for the same rack."""
    name = rack_limit_name("ams1", "ams1-r01")
    code = "from flows.rack_bringup import rack_bringup; rack_bringup(site='ams1', rack='ams1-r01', dry_run=False)"
    env = os.environ | {"PREFECT_API_URL": lab.cfg.prefect_url}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    peak, seen_waiting = 0, False
    deadline = time.monotonic() + 600
    with get_client(sync_client=True) as client:
        while any(r.poll() is None for r in runs) and time.monotonic() < deadline:
            slots = client.read_global_concurrency_limit_by_name(name).active_slots
            peak = max(peak, slots)
            seen_waiting |= slots == 1 and all(r.poll() is None for r in runs)
            time.sleep(0.2)
    errors = [r.communicate(timeout=60)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], errors
    assert peak == 1, f"the limit {name} held {peak} slots at once"
    assert seen_waiting, "the two runs never overlapped, so nothing was shown"


def test_a_fabric_apply_of_a_rack_waits_while_another_run_changes_it(lab: Lab) -> None:
    leaf = "ams1-r01-leaf1"
    assert rack_bringup(site="ams1", rack="ams1-r01", dry_run=False).failed == 0
    lab.fabric.vtysh(leaf, "configure terminal", "interface swp1", "description by hand")
    output = held_back(
        "from flows.fabric import fabric_apply; fabric_apply(site='ams1', rack='ams1-r01', dry_run=False)",
        rack_limit_name("ams1", "ams1-r01"),
        lambda: lab.fabric.vtysh(leaf, "show running-config"),
    )
    assert "Finished in state Completed" in output
    assert "by hand" not in lab.fabric.vtysh(leaf, "show running-config")


def test_a_failing_server_fails_only_its_row_and_keeps_the_rack_planned(
    lab: Lab, nb: pynetbox.api, sites: list[Site], vault: Vault
) -> None:
    broken = site(sites, "ams1").device("ams1-r02-cmp2")
    assert broken is not None
    cred = vault.credential("ams1", "compute")
    ssh_exec(broken, cred, "rm -rf /etc/atlas && touch /etc/atlas")  # the facts directory cannot be made
    try:
        with pytest.raises(BringupFailed, match="ams1-r02-cmp2") as info:
            rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    finally:
        ssh_exec(broken, cred, "rm -f /etc/atlas")
    assert "/etc/atlas/facts.json: a parent of it is not a directory" in str(info.value)
    assert "ams1-r02-cmp1" not in str(info.value)
    assert nb.dcim.racks.get(name="ams1-r02").status.value == "planned"
    assert nb.dcim.devices.get(name="ams1-r02-cmp1").status.value == "planned"
    report = rack_bringup(site="ams1", rack="ams1-r02", dry_run=False)
    rows = {r["device"]: r["result"] for r in report.rows}
    assert report.failed == 0
    assert rows["ams1-r02-cmp2"] == "changed" and rows["ams1-r02-leaf1"] == "unchanged"
    assert nb.dcim.racks.get(name="ams1-r02").status.value == "active"


# --- power-on to production: blank, powered-off servers installed from the network ------------------
NEXT_IMAGE = "os-2026.12.2"
CORRUPT_IMAGE = "os-2026.12.1-corrupt"


def set_device(nb: pynetbox.api, name: str, status: str | None = None, **fields: str) -> None:
    device = nb.dcim.devices.get(name=name)
    if status is not None:
        device.status = status
    device.custom_fields = {**device.custom_fields, **fields}
    device.save()


def installed_at(lab: Lab, name: str) -> float | None:
    """When the server's disk was last written from a network boot (None: never)."""
    record = lab.fabric.node_dir(name) / INSTALLED
    return record.stat().st_mtime if record.exists() else None


def mgmt_cable(lab: Lab, name: str, plugged: bool) -> None:
    """The server's management NIC (its provisioning network) plugged into the lab's bridge, or not."""
    veth = f"{lab.cfg.prefix}m{_mgmt_offset(lab, name)}"
    master = ["master", lab.cfg.bridge] if plugged else ["nomaster"]
    procs.run(["ip", "link", "set", veth, *master], f"management cable of {name}")


def _mgmt_offset(lab: Lab, name: str) -> int:
    sites, _ = lab.sites_and_disks()
    device = next(d for s in sites for d in s.devices if d.name == name)
    assert device.mgmt_address is not None
    return int(device.mgmt_address.ip) - int(device.mgmt_address.network.network_address)


def corrupt_copy(lab: Lab, version: str, corrupt: str) -> None:
    """`corrupt`: `version`'s artifact published under another name, then one byte of it flipped in S3."""
    catalog = lab.catalog()
    good = catalog.manifest(version)
    assert good is not None
    if catalog.manifest(corrupt) is None:
        source = lab.cfg.dir / "copy.tar.gz"
        source.write_bytes(catalog.open_artifact(version)[1].read())
        catalog.publish(corrupt, source, amis=False, ssh_host_key=good.ssh_host_key)
        source.unlink()
    data = bytearray(catalog.open_artifact(corrupt)[1].read())
    data[len(data) // 2] ^= 0xFF
    catalog._client("s3").put_object(
        Bucket=catalog.settings.bucket, Key=f"images/{corrupt}/{ARTIFACT}", Body=bytes(data)
    )


def test_a_rack_of_blank_powered_off_servers_is_installed_from_the_network_and_comes_up_active(
    lab: Lab, nb: pynetbox.api
) -> None:
    """fra1-r02 again as a new rack arrives: planned, its servers off with blank disks, NetBox naming
    their image. A server whose DHCP does not answer and one whose image is corrupt each stop with
    the cause; nothing half-installed; fixed, the re-run completes without installing twice."""
    cmp1, cmp2, sto1 = R02_SERVERS
    rack = nb.dcim.racks.get(name="fra1-r02")
    rack.status = "planned"
    rack.save()
    corrupt_copy(lab, OS_IMAGE_VERSION, CORRUPT_IMAGE)
    for name in R02_SERVERS:
        lab.wipe(name)
        set_device(nb, name, "planned", os_image=OS_IMAGE_VERSION, os_installed="")
    set_device(nb, sto1, os_image=CORRUPT_IMAGE)
    dry = rack_bringup(site="fra1", rack="fra1-r02", dry_run=True)
    details = {r["device"]: r["detail"] for r in dry.rows}
    assert f"would boot once from the network into {OS_IMAGE_VERSION}" in details[cmp1], details
    assert all(lab.fabric.machine(n).pid() is None and installed_at(lab, n) is None for n in R02_SERVERS)
    mgmt_cable(lab, cmp2, plugged=False)  # its DHCP never answers
    try:
        with pytest.raises(BringupFailed) as info:
            rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    finally:
        mgmt_cable(lab, cmp2, plugged=True)
    message = str(info.value)
    mac = lab.fabric.hardware(cmp2).macs["eth0"]
    assert (
        f"{cmp2}: network boot of {OS_IMAGE_VERSION} stopped: network boot failed: no DHCP answer on eth0 ({mac})"
        in message
    )
    assert f"{sto1}: network boot of {CORRUPT_IMAGE} stopped: network boot failed: image " in message
    assert "is corrupt: sha256" in message and cmp1 not in message
    assert installed_at(lab, cmp2) is None and installed_at(lab, sto1) is None  # nothing half-written
    first = installed_at(lab, cmp1)
    assert first is not None
    assert nb.dcim.devices.get(name=cmp1).custom_fields["os_installed"] == OS_IMAGE_VERSION
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "planned"
    set_device(nb, sto1, os_image=OS_IMAGE_VERSION)  # the fix: an image that is whole
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.failed == 0, report.rows
    assert installed_at(lab, cmp1) == first  # not installed twice
    for name in R02_SERVERS:
        device = nb.dcim.devices.get(name=name)
        assert device.custom_fields["os_installed"] == OS_IMAGE_VERSION
        assert device.status.value == "active"
    assert nb.dcim.racks.get(name="fra1-r02").status.value == "active"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rack-bringup-fra1-fra1-r02-devices"]))
        )
    assert any(f"installed {OS_IMAGE_VERSION}" in str(a.data) for a in artifacts)
    swept = config_sweep(sites=["fra1"])
    drift = [r for r in swept if r.target.startswith("fra1-r02") and (r.changed or r.failed)]
    assert not drift, drift


def test_the_rerun_on_the_installed_rack_changes_nothing_and_boots_no_server(lab: Lab) -> None:
    boots = {n: boot_id(lab, n) for n in R02_SERVERS}
    written = {n: installed_at(lab, n) for n in R02_SERVERS}
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.changed == 0 and report.failed == 0, report.rows
    details = {r["device"]: r["detail"] for r in report.rows}
    assert f"runs {OS_IMAGE_VERSION}, as NetBox names" in details["fra1-r02-cmp1"], details
    assert {n: boot_id(lab, n) for n in R02_SERVERS} == boots
    assert {n: installed_at(lab, n) for n in R02_SERVERS} == written


def test_another_image_is_left_alone_unless_re_image_and_a_re_image_killed_mid_install_is_not_repeated(
    lab: Lab, nb: pynetbox.api
) -> None:
    cmp1 = R02_SERVERS[0]
    lab.publish_os_image(NEXT_IMAGE)
    set_device(nb, cmp1, os_image=NEXT_IMAGE)
    boot = boot_id(lab, cmp1)
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    details = {r["device"]: r["detail"] for r in report.rows}
    assert (
        report.changed == 0
        and f"has {OS_IMAGE_VERSION}, NetBox names {NEXT_IMAGE}: left alone" in details[cmp1]
    )
    assert boot_id(lab, cmp1) == boot
    # the re-image, its flow process killed once the server is booting from the network
    before = installed_at(lab, cmp1)
    code = (
        "from flows.rack_bringup import rack_bringup; "
        "rack_bringup(site='fra1', rack='fra1-r02', dry_run=False, reimage=True)"
    )
    kill_when(code, lambda: installed_at(lab, cmp1) != before)  # its disk written, the flow still waiting
    written = installed_at(lab, cmp1)
    report = rack_bringup(site="fra1", rack="fra1-r02", dry_run=False)
    assert report.failed == 0, report.rows
    details = {r["device"]: r["detail"] for r in report.rows}
    assert f"runs {NEXT_IMAGE} (its host key): recorded" in details[cmp1], details
    assert installed_at(lab, cmp1) == written  # installed once
    assert nb.dcim.devices.get(name=cmp1).custom_fields["os_installed"] == NEXT_IMAGE
    inside = procs.run([*lab.fabric.nsenter(cmp1), "cat", "/etc/atlas-image.json"], "image").stdout
    assert NEXT_IMAGE in inside


@pytest.fixture(scope="module", autouse=True)
def fresh_lab(lab: Lab) -> None:
    """Every rack as the topology has it: planned racks blank, nothing configured yet."""
    lab.reset()
