"""Preflight on NetBox data given as plain models: every kind of bad data is named, nothing else. And
the bring-up steps after it, decided on device state given as plain data: cabling, routing, switch
configuration, the report and the journal."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from prefect.utilities.collections import visit_collection

from atlas.core.errors import Refused
from atlas.core.model import Cable, Credential, Endpoint, Site
from atlas.core.run import Result, Results, Target, TargetMap, targets
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.intent import RoutingState
from atlas.net.render import render, switch_intent
from atlas.net.sessions import wait_reachable
from atlas.runbooks.bringup import (
    DeviceState,
    RackScope,
    check_rack_cabling,
    configure_switches,
    expected_routes,
    fabric_ports,
    failure,
    journal_text,
    preflight,
    report_rows,
    verify_routing,
)
from atlas.runbooks.bringup import report as bringup_report
from atlas.sot.topology import load_topology

RACK = "fra1-r02"


def scope(change: Callable[[Site], Site] | None = None) -> RackScope:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
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
    "switch platform Atlas does not know": (
        lambda s: with_device(s, "fra1-r02-leaf2", platform="junos"),
        "fra1-r02-leaf2: switch platform 'junos' (the device's platform in NetBox) is not one Atlas knows",
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


# --- after preflight: the steps on plain data, decided on the state the run read (no device asked) ---
CRED = Credential(username="atlas", password="not-a-secret")


def rack_targets(s: RackScope) -> TargetMap:
    return TargetMap(targets(s.touched, lambda d: CRED))


def neighbours_as_cabled(s: RackScope, name: str) -> dict[str, Endpoint]:
    return {mine.interface: far for c in s.site.cables_of(name) for mine, far in [c.ends_from(name)]}


def states_as_intended(s: RackScope) -> dict[str, DeviceState]:
    """Every device as NetBox wants it: cabled as NetBox says, configured, OSPF Full on every
    fabric link, a route to every expected loopback."""
    routes = {n: frozenset[str]() for n in expected_routes(s)}
    return {
        d.name: DeviceState(
            neighbours=neighbours_as_cabled(s, d.name),
            running_config=render(switch_intent(s.site, d, s.devices)) if d.role.is_switch else None,
            routing=RoutingState(frozenset(fabric_ports(s, d)), routes) if d.role.is_switch else None,
        )
        for d in s.touched
    }


@pytest.mark.parametrize("argument", ["scope", "targets"])
def test_a_scope_and_its_targets_are_opaque_to_prefect(argument: str) -> None:
    """Prefect walks a task's arguments for futures; a scope (the whole site's models) and the
    targets (every device's) are one object each, and the targets keep the scope's order."""
    s = scope()
    found = rack_targets(s)
    seen: list[object] = []
    visit_collection(s if argument == "scope" else found, visit_fn=seen.append, return_data=False)
    assert len(seen) == 1
    assert list(found) == [d.name for d in s.touched] and found["fra1-r02-leaf1"].address == "198.18.0.10"


def test_a_rack_device_without_an_address_gets_no_target() -> None:
    s = scope(lambda site: with_device(site, "fra1-r02-cmp1", mgmt_address=None))
    with pytest.raises(Refused, match="fra1-r02-cmp1: no management address in NetBox"):
        rack_targets(s)


def test_cabling_as_in_netbox_passes_and_a_swapped_pair_is_named_from_what_was_read() -> None:
    s = scope()
    states = states_as_intended(s)
    assert check_rack_cabling(s, rack_targets(s), states, wait=0) == []
    seen = states["fra1-r02-leaf1"].neighbours
    swapped = seen | {"swp1": seen["swp2"], "swp2": seen["swp1"]}
    states["fra1-r02-leaf1"] = DeviceState(neighbours=swapped)
    problems = check_rack_cabling(s, rack_targets(s), states, wait=0)
    assert len(problems) == 2 and all("fra1-r02-leaf1:swp" in p for p in problems), problems


def test_a_port_still_silent_when_the_wait_is_over_counts_as_missing() -> None:
    s = scope()
    states = states_as_intended(s)
    states["fra1-r02-cmp1"] = DeviceState(neighbours={})
    problems = check_rack_cabling(s, rack_targets(s), states, wait=0)
    assert problems and all(p.startswith("fra1-r02-cmp1:") for p in problems), problems


def test_switches_already_as_intended_change_nothing() -> None:
    s = scope()
    results = configure_switches(s, rack_targets(s), states_as_intended(s), dry_run=False)
    assert [r.target for r in results] == [d.name for d in s.switches]
    assert not results.changed and not results.failed


def test_routing_read_at_the_start_is_enough_when_no_switch_changed() -> None:
    s = scope()
    states = states_as_intended(s)
    assert verify_routing(s, rack_targets(s), states, switches_changed=False, timeout=0) == []
    leaf = states["fra1-r02-leaf1"]
    assert leaf.routing is not None
    down = RoutingState(leaf.routing.full_neighbours_on - {"swp1"}, leaf.routing.routes)
    states["fra1-r02-leaf1"] = DeviceState(neighbours=leaf.neighbours, routing=down)
    problems = verify_routing(s, rack_targets(s), states, switches_changed=False, timeout=0)
    assert len(problems) == 1 and "fra1-r02-leaf1:swp1" in problems[0], problems


def test_a_device_whose_ssh_port_does_not_answer_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        up = Target(device=scope().leaves[0], address="127.0.0.1", credential=CRED)
        assert wait_reachable([up], timeout=0, port=port) == {}
    assert wait_reachable([up], timeout=0, port=port) == {
        up.name: f"{up.name}: SSH (127.0.0.1:{port}) not reachable within 0 s"
    }


LEAF, HOST = "fra1-r02-leaf1", "fra1-r02-cmp1"
RESULTS = Results(
    [
        Result(
            target=LEAF, step="switch-config", changed=True, diff=("a", "b"), detail="2 change(s) applied"
        ),
        Result.failure(HOST, "host-baseline.yml", "facts: not a directory"),
    ]
)


def test_report_rows_are_one_per_device_in_the_scopes_order() -> None:
    s = scope()
    rows = report_rows(s, RESULTS)
    assert [r["device"] for r in rows] == [d.name for d in s.touched]
    by_name = {r["device"]: r for r in rows}
    assert by_name[LEAF] == {
        "device": LEAF,
        "role": "leaf",
        "result": "changed",
        "changes": "2",
        "detail": "2 change(s) applied",
    }
    assert by_name[HOST]["result"] == "failed" and by_name["fra1-spine1"]["result"] == "unchanged"


def test_the_report_counts_devices_changed_and_steps_failed() -> None:
    s = scope()
    report = bringup_report(s, False, RESULTS, [])
    assert (report.changed, report.failed) == (1, 1)
    assert (
        failure(s, RESULTS) == f"1 step(s) failed; rack {RACK} stays planned: {HOST}: facts: not a directory"
    )


def test_a_journal_entry_says_what_changed_and_only_where_something_did() -> None:
    text = journal_text(LEAF, RESULTS, "planned", "run-1")
    assert text == (
        "rack-bringup run-1:\n- switch-config: 2 change(s) applied\n  - `a`\n  - `b`\n- status: planned → active"
    )
    assert journal_text("fra1-spine1", RESULTS, None, "run-1") is None
