"""Preflight on NetBox data given as plain models: every kind of bad data is named, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atlas.core.model import Cable, Site
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.bringup import RackScope, preflight
from atlas.sot.topology import load_topology

RACK = "fra1-r02"


def scope(change: Callable[[Site], Site] | None = None) -> RackScope:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = next(s for s in topo.sites if s.name == "fra1")
    if change is not None:
        site = change(site)
    devices = {d.name: d for d in topo.all_devices()} | {d.name: d for d in site.devices}
    return RackScope(site=site, rack=RACK, devices=devices)


def with_device(site: Site, device: str, **update: object) -> Site:
    return site.model_copy(
        update={
            "devices": tuple(d.model_copy(update=update) if d.name == device else d for d in site.devices)
        }
    )


def with_interface(site: Site, device: str, interface: str, **update: object) -> Site:
    d = site.device(device)
    assert d is not None
    ifaces = tuple(i.model_copy(update=update) if i.name == interface else i for i in d.interfaces)
    return with_device(site, device, interfaces=ifaces)


def without_cables(site: Site, keep: Callable[[Cable], bool]) -> Site:
    return site.model_copy(update={"cables": tuple(c for c in site.cables if keep(c))})


def test_the_default_lab_rack_passes() -> None:
    assert preflight(scope()) == []


BAD: dict[str, tuple[Callable[[Site], Site], str]] = {
    "no platform": (lambda s: with_device(s, "fra1-r02-leaf1", platform=None), "fra1-r02-leaf1: no platform"),
    "no management address": (
        lambda s: with_device(s, "fra1-r02-cmp1", mgmt_address=None),
        "fra1-r02-cmp1: no management address",
    ),
    "no loopback": (lambda s: with_device(s, "fra1-r02-leaf2", loopback=None), "fra1-r02-leaf2: no loopback"),
    "server NIC not cabled": (
        lambda s: without_cables(s, lambda c: str(c.b) != "fra1-r02-sto1:eth2"),
        "fra1-r02-sto1:eth2: server NIC is not cabled",
    ),
    "leaf without uplink": (
        lambda s: without_cables(
            s, lambda c: not (c.b.device == "fra1-r02-leaf1" and c.a.device.startswith("fra1-spine"))
        ),
        "fra1-r02-leaf1: no uplink to a spine",
    ),
    "duplicate address": (
        lambda s: with_interface(
            s, "fra1-r02-cmp2", "eth1", addresses=s.device("fra1-r02-cmp1").interfaces[2].addresses
        ),  # type: ignore[union-attr]
        "is assigned more than once",
    ),
    "newline and a command in a description": (
        lambda s: with_interface(s, "fra1-r02-leaf1", "swp3", description="to cmp1\nwrite erase"),
        "fra1-r02-leaf1:swp3 description 'to cmp1\\nwrite erase' contains control characters",
    ),
    "CLI separator in a description": (
        lambda s: with_interface(s, "fra1-r02-leaf2", "swp4", description="uplink; reload"),
        "contains CLI separators",
    ),
    "unsafe device name": (
        lambda s: with_device(s, "fra1-r02-cmp2", name="fra1-r02-cmp2;reboot"),
        "'fra1-r02-cmp2;reboot' is not a safe name",
    ),
    "unsafe interface name": (
        lambda s: with_interface(s, "fra1-r02-leaf1", "swp9", name="swp9 shutdown"),
        "'swp9 shutdown' is not a safe name",
    ),
    "cabled switch port without address": (
        lambda s: with_interface(s, "fra1-r02-leaf2", "swp1", addresses=()),
        "fra1-r02-leaf2:swp1: cabled but has no address",
    ),
    "platform without a template": (
        lambda s: with_device(s, "fra1-r02-leaf2", platform="junos"),
        "no configuration template for platform 'junos'",
    ),
    "server NIC without address": (
        lambda s: with_interface(s, "fra1-r02-cmp1", "eth2", addresses=()),
        "fra1-r02-cmp1:eth2: no address",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_netbox_data_is_named(kind: str) -> None:
    change, expected = BAD[kind]
    problems = preflight(scope(change))
    assert any(expected in p for p in problems), problems


def test_all_problems_are_listed_together() -> None:
    def everything(site: Site) -> Site:
        for change, _ in BAD.values():
            site = change(site)
        return site

    problems = "\n".join(preflight(scope(everything)))
    missing = [kind for kind, (_, expected) in BAD.items() if expected not in problems]
    assert missing == []


def test_a_rack_without_devices_is_refused() -> None:
    empty = scope(lambda s: s.model_copy(update={"devices": tuple(d for d in s.devices if d.rack != RACK)}))
    assert preflight(empty) == [f"rack {RACK} has no devices in NetBox"]
