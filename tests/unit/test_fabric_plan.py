"""Fabric maintenance decisions on plain data: selection, the last-path guard, what traffic must
avoid after a cost-out, and how a cost-out renders."""

from __future__ import annotations

import pytest

from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.verify import RoutingState
from atlas.runbooks.fabric import (
    SelectionError,
    last_path_problems,
    select_switches,
    traffic_problems,
    transit_destinations,
    with_cost_out,
)
from atlas.runbooks.site import SiteView
from atlas.sot.topology import load_topology

SPINE1, SPINE2, LEAF1, LEAF2 = "fra1-spine1", "fra1-spine2", "fra1-r01-leaf1", "fra1-r01-leaf2"


def view() -> SiteView:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = next(s for s in topo.sites if s.name == "fra1")
    return SiteView(site=site, devices={d.name: d for d in topo.all_devices()})


def all_full(v: SiteView) -> dict[str, RoutingState | None]:
    """Every active switch sees every one of its cabled switch links Full."""
    return {
        d.name: RoutingState(
            full_neighbours_on=frozenset(p for p, peer in v.peers(d.name) if peer.role.is_switch), routes={}
        )
        for d in v.active_switches
    }


def test_without_a_choice_every_active_switch_of_the_site_is_chosen() -> None:
    chosen = {d.name for d in select_switches(view(), None, [])}
    assert chosen == {SPINE1, SPINE2, LEAF1, LEAF2}  # fra1-r02 is planned


def test_a_bad_selection_names_every_problem() -> None:
    with pytest.raises(SelectionError) as info:
        select_switches(view(), "fra1-r09", ["nope", "fra1-r01-cmp1", "fra1-r02-leaf1"])
    assert len(info.value.problems) == 4
    text = str(info.value)
    for part in ("fra1-r09", "'nope'", "compute, not a switch", "fra1-r02-leaf1 is planned"):
        assert part in text


def test_a_rack_selects_its_leaves() -> None:
    assert {d.name for d in select_switches(view(), "fra1-r01", [])} == {LEAF1, LEAF2}


def test_one_spine_may_go_while_the_other_carries_the_leaves() -> None:
    v = view()
    assert last_path_problems(v, {SPINE1}, all_full(v)) == []


def test_the_last_spine_is_refused_for_every_leaf_that_would_lose_it() -> None:
    v = with_cost_out(view(), SPINE2, True)
    problems = last_path_problems(v, {SPINE1}, all_full(v))
    assert problems == [
        f"{LEAF1} would have no working path to any spine ({SPINE1}, {SPINE2})",
        f"{LEAF2} would have no working path to any spine ({SPINE1}, {SPINE2})",
    ]


def test_an_unreachable_spine_or_a_down_link_is_no_path() -> None:
    v = view()
    states = all_full(v)
    states[SPINE2] = None
    assert len(last_path_problems(v, {SPINE1}, states)) == 2
    states = all_full(v)
    leaf1 = states[LEAF1]
    assert leaf1 is not None
    states[LEAF1] = RoutingState(full_neighbours_on=leaf1.full_neighbours_on - {"swp2"}, routes={})
    assert last_path_problems(v, {SPINE1}, states) == [
        f"{LEAF1} would have no working path to any spine ({SPINE1}, {SPINE2})"
    ]


def test_both_leaves_of_a_rack_leave_its_servers_without_a_path() -> None:
    v = view()
    assert last_path_problems(v, {LEAF1}, all_full(v)) == []
    problems = last_path_problems(v, {LEAF1, LEAF2}, all_full(v))
    assert sorted(p.split()[0] for p in problems) == ["fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"]


def test_after_a_spine_cost_out_a_leaf_must_reach_all_but_the_spine_around_it() -> None:
    v = view()
    wanted = transit_destinations(v, LEAF1, SPINE1)
    loopback = {d.name: d.loopback.network for d in v.site.devices if d.loopback is not None}
    assert loopback[SPINE1] not in wanted
    assert {loopback[SPINE2], loopback[LEAF2], loopback["fra1-r01-cmp1"]} <= set(wanted)
    assert loopback["fra1-r02-leaf1"] not in wanted  # planned: not routed yet


def test_routes_still_through_the_spine_are_named_and_a_cost_in_must_use_it_again() -> None:
    v = view()
    through_spine1 = {n: frozenset({"swp1"}) for n in transit_destinations(v, LEAF1, SPINE1)}
    around = {n: frozenset({"swp2"}) for n in transit_destinations(v, LEAF1, SPINE1)}
    full = frozenset({"swp1", "swp2"})
    leaf1 = v.devices[LEAF1]
    bad = traffic_problems(v, SPINE1, [leaf1], {LEAF1: RoutingState(full, through_spine1)}, costed_out=True)
    assert len(bad) == 1 and bad[0].startswith(f"{LEAF1} still routes {len(through_spine1)} destination(s)")
    assert traffic_problems(v, SPINE1, [leaf1], {LEAF1: RoutingState(full, around)}, costed_out=True) == []
    assert traffic_problems(v, SPINE1, [leaf1], {LEAF1: RoutingState(full, around)}, costed_out=False) == [
        f"{LEAF1} routes nothing through {SPINE1} yet"
    ]
    assert traffic_problems(v, SPINE1, [leaf1], {LEAF1: None}, costed_out=True) == [
        f"{LEAF1}: routing table could not be read"
    ]


def test_a_cost_out_renders_max_metric_and_makes_a_leafs_own_routes_the_costliest() -> None:
    v = view()
    out = with_cost_out(v, LEAF1, True)
    leaf = out.render(out.devices[LEAF1])
    assert " max-metric router-lsa administrative" in leaf
    assert " redistribute static metric 16777214" in leaf
    spine = with_cost_out(v, SPINE1, True)
    assert " max-metric router-lsa administrative" in spine.render(spine.devices[SPINE1])
    assert "max-metric" not in v.render(v.devices[LEAF1])
    assert "ip route 198.19.0.6/32" in leaf  # the leaf still routes to its servers


def test_a_switch_costed_out_before_is_no_other_way_when_the_next_one_goes() -> None:
    """An evacuation costs out both spines, one after the other: once spine1 is out, traffic that
    can only go by spine1 does not count as having another way around spine2."""
    first = with_cost_out(view(), SPINE1, True)
    loopback = {d.name: d.loopback.network for d in first.site.devices if d.loopback is not None}
    around = transit_destinations(first, LEAF1, SPINE2, past_costed_out=False)
    assert loopback[SPINE1] not in around and loopback[LEAF2] not in around  # only by a costed-out spine
    assert loopback["fra1-r01-cmp1"] in around  # its own servers: directly
    assert loopback[LEAF2] in transit_destinations(first, LEAF1, SPINE2)  # the cost-in view keeps the way
