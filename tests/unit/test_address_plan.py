"""The address plan checked by preflight (atlas.sot.address_plan) on the default topology as plain
data: each rule names the objects involved; the topology as shipped passes."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

from atlas.core.model import Cable, Credential, Device, DeviceStatus, Endpoint, Prefix, Site
from atlas.core.run import targets
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.bringup import RackScope, preflight
from atlas.runbooks.site import SiteView
from atlas.runbooks.sweep import check_hosts, check_switches
from atlas.sot.address_plan import address_problems, link_problems
from atlas.sot.topology import load_topology

RACK = "fra1-r02"
CMP1 = "fra1-r02-cmp1"


def scope(change: object = None) -> RackScope:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    if callable(change):
        site = change(site)
    devices = {d.name: d for d in topo.all_devices()} | {d.name: d for d in site.devices}
    return RackScope(site=site, rack=RACK, devices=devices)


def with_address(site: Site, device: str, interface: str, address: str) -> Site:
    def update(d: Device) -> Device:
        if d.name != device:
            return d
        ifaces = tuple(
            i.model_copy(update={"addresses": (IPv4Interface(address),)}) if i.name == interface else i
            for i in d.interfaces
        )
        extra = {"mgmt_address": IPv4Interface(address)} if interface == "eth0" else {}
        return d.model_copy(update={"interfaces": ifaces, **extra})

    return site.model_copy(update={"devices": tuple(update(d) for d in site.devices)})


def test_the_shipped_plan_passes() -> None:
    s = scope()
    assert address_problems(s.touched, s.site.prefixes) == []
    assert link_problems(s.site.cables, s.devices, "fra1") == []


def test_a_server_address_off_its_link_and_outside_the_fabric_prefix_is_named_twice() -> None:
    s = scope(lambda site: with_address(site, CMP1, "eth1", "10.9.9.9/31"))
    problems = preflight(s)
    assert (
        f"{CMP1}:eth1: fabric address 10.9.9.9/31 lies in no prefix of role fabric "
        "(the prefixes of that role: 198.18.64.0/18)" in problems
    ), problems
    assert (
        f"link fra1-r02-leaf1:swp3 - {CMP1}:eth1: its ends are not in one subnet "
        f"(fra1-r02-leaf1:swp3 198.18.64.28/31, {CMP1}:eth1 10.9.9.9/31)" in problems
    ), problems


def test_a_management_address_outside_the_management_prefix_is_named() -> None:
    s = scope(lambda site: with_address(site, CMP1, "eth0", "203.0.113.7/24"))
    assert any(
        p.startswith(f"{CMP1}:eth0: management address 203.0.113.7/24 lies in no prefix of role management")
        for p in preflight(s)
    )


def test_a_prefix_scoped_to_another_site_does_not_hold_this_sites_addresses() -> None:
    s = scope()
    others = tuple(
        p.model_copy(update={"site": "ams1"}) if p.role == "management" else p for p in s.site.prefixes
    )
    problems = address_problems(s.servers, others)
    assert problems and all("NetBox has no prefix of role management for site fra1" in p for p in problems)


def test_the_ends_of_a_link_must_be_one_point_to_point_subnet_of_distinct_usable_addresses() -> None:
    same = scope(lambda site: with_address(site, CMP1, "eth1", "198.18.64.28/31"))
    assert f"link fra1-r02-leaf1:swp3 - {CMP1}:eth1: both ends have address 198.18.64.28" in link_problems(
        same.site.cables, same.devices, "fra1"
    )

    def wide(site: Site) -> Site:
        site = with_address(site, CMP1, "eth1", "198.18.64.29/29")
        return with_address(site, "fra1-r02-leaf1", "swp3", "198.18.64.28/29")

    w = scope(wide)
    assert (
        "link fra1-r02-leaf1:swp3 - fra1-r02-cmp1:eth1: a /29 subnet (198.18.64.24/29); "
        "a point-to-point link is /31 or /30" in link_problems(w.site.cables, w.devices, "fra1")
    )

    def thirty(site: Site) -> Site:
        site = with_address(site, CMP1, "eth1", "198.18.64.29/30")
        return with_address(site, "fra1-r02-leaf1", "swp3", "198.18.64.28/30")

    t = scope(thirty)
    assert link_problems(t.site.cables, t.devices, "fra1") == [
        "link fra1-r02-leaf1:swp3 - fra1-r02-cmp1:eth1: fra1-r02-leaf1:swp3 has 198.18.64.28, "
        "the network or broadcast address of 198.18.64.28/30"
    ]


def test_a_cable_leaving_the_site_for_anything_but_the_core_is_named() -> None:
    def to_ams1(site: Site) -> Site:
        cable = Cable(
            a=Endpoint(device="fra1-r02-leaf1", interface="swp30"),
            b=Endpoint(device="ams1-spine1", interface="swp30"),
        )
        return site.model_copy(update={"cables": (*site.cables, cable)})

    s = scope(to_ams1)
    assert (
        "cable fra1-r02-leaf1:swp30 - ams1-spine1:swp30 leaves site fra1 for ams1-spine1 of site ams1 "
        "(role spine): only the core joins sites" in preflight(s)
    )
    # the core's cables to the spines are how sites are joined
    assert not any("core1" in p for p in link_problems(s.site.cables, s.devices, "fra1"))


def test_prefix_roles_are_what_the_plan_says() -> None:
    plan = (Prefix(prefix=IPv4Network("198.19.0.0/22"), role="anycast"),)
    s = scope()
    server = s.site.device(CMP1)
    assert server is not None
    problems = address_problems([server], plan)
    assert f"{CMP1}:lo: service address 198.19.3.254/32" not in " ".join(problems)  # anycast holds it
    assert any(
        p.startswith(f"{CMP1}:lo: loopback 198.19.0.11/32 lies in no prefix of role loopback")
        for p in problems
    )


def test_a_cable_between_roles_the_fabric_does_not_join_is_named() -> None:
    def server_to_spine(site: Site) -> Site:
        cable = Cable(
            a=Endpoint(device="fra1-spine1", interface="swp31"),
            b=Endpoint(device="fra1-r02-cmp2", interface="eth3"),
        )
        return site.model_copy(update={"cables": (*site.cables, cable)})

    s = scope(server_to_spine)
    assert link_problems(s.site.cables, s.devices, "fra1") == [
        "cable fra1-spine1:swp31 - fra1-r02-cmp2:eth3 joins spine fra1-spine1 to compute fra1-r02-cmp2: "
        "a spine is cabled to core or leaf in this fabric"
    ]


def test_the_sweep_does_not_check_a_device_whose_address_plan_is_unsound_and_names_why() -> None:
    def bad(site: Site) -> Site:
        site = with_address(site, "fra1-r01-cmp1", "eth1", "198.19.201.9/31")
        return site.model_copy(
            update={
                "devices": tuple(d.model_copy(update={"status": DeviceStatus.ACTIVE}) for d in site.devices)
            }
        )

    s = scope(bad)
    view = SiteView(site=s.site, devices=s.devices)
    cmp1, leaf1 = s.site.device("fra1-r01-cmp1"), s.site.device("fra1-r01-leaf1")
    assert cmp1 is not None and leaf1 is not None
    found = {t.name: t for t in targets([cmp1, leaf1], lambda d: Credential(username="never-used"))}
    hosts = check_hosts(view, {"fra1-r01-cmp1": found["fra1-r01-cmp1"]}, limit=1)  # refused before any SSH
    switches = check_switches(view, {"fra1-r01-leaf1": found["fra1-r01-leaf1"]}, limit=1)
    for [result] in (hosts, switches):
        assert result.failed and result.detail.startswith(
            "not checked: the address and routing plan in NetBox: "
        )
        assert "its ends are not in one subnet" in result.detail
    assert "fabric address 198.19.201.9/31 lies in no prefix of role fabric" in hosts[0].detail
