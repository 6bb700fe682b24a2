"""Fabric maintenance decisions on plain data: selection, the last-path guard, what traffic must
avoid after a cost-out, how a cost-out renders, the cost changes decided from one reading of the
switches (an evacuation's several in a row included), and switches that could not be read."""

from __future__ import annotations

import pytest

from atlas.core.run import Readings
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.intent import RoutingState
from atlas.runbooks.fabric import (
    CostOutRefused,
    SelectionError,
    adjacency_problems,
    is_costed_out,
    last_path_problems,
    plan_costs,
    select_switches,
    traffic_problems,
    transit_destinations,
    with_cost_out,
)
from atlas.runbooks.site import SiteView, view_from
from atlas.sot.topology import load_topology

SPINE1, SPINE2, LEAF1, LEAF2 = "fra1-spine1", "fra1-spine2", "fra1-r01-leaf1", "fra1-r01-leaf2"


def view() -> SiteView:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    return SiteView(site=site, devices={d.name: d for d in topo.all_devices()})


def full(v: SiteView, name: str) -> RoutingState:
    """`name` sees every one of its cabled switch links Full."""
    return RoutingState(
        full_neighbours_on=frozenset(p for p, peer in v.peers(name) if peer.role.is_switch), routes={}
    )


def all_full(v: SiteView) -> Readings[RoutingState]:
    """Every active switch read, each seeing every one of its cabled switch links Full."""
    return Readings(values={d.name: full(v, d.name) for d in v.active_switches}, errors={})


def unreadable(states: Readings[RoutingState], name: str, why: str) -> Readings[RoutingState]:
    """The same reading, with `name` not read, for `why`."""
    values = {n: s for n, s in states.values.items() if n != name}
    return Readings(values=values, errors={**states.errors, name: why})


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
    states = unreadable(all_full(v), SPINE2, f"{SPINE2}: TimeoutError: timed out")
    assert len(last_path_problems(v, {SPINE1}, states)) == 2
    states = all_full(v)
    leaf1 = states.values[LEAF1]
    states.values[LEAF1] = RoutingState(full_neighbours_on=leaf1.full_neighbours_on - {"swp2"}, routes={})
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

    def read(state: RoutingState) -> Readings[RoutingState]:
        return Readings(values={LEAF1: state}, errors={})

    bad = traffic_problems(v, SPINE1, [leaf1], read(RoutingState(full, through_spine1)), costed_out=True)
    assert len(bad) == 1 and bad[0].startswith(f"{LEAF1} still routes {len(through_spine1)} destination(s)")
    assert traffic_problems(v, SPINE1, [leaf1], read(RoutingState(full, around)), costed_out=True) == []
    assert traffic_problems(v, SPINE1, [leaf1], read(RoutingState(full, around)), costed_out=False) == [
        f"{LEAF1} routes nothing through {SPINE1} yet"
    ]


def test_a_neighbour_that_could_not_be_read_is_a_problem_that_says_why() -> None:
    v = view()
    leaf1, leaf2 = v.devices[LEAF1], v.devices[LEAF2]
    states = unreadable(all_full(v), LEAF1, f"{LEAF1}: TimeoutError: timed out")
    states = unreadable(states, LEAF2, "ValueError: Expecting value: line 1 column 1 (char 0)")
    assert traffic_problems(v, SPINE1, [leaf1, leaf2], states, costed_out=True) == [
        f"{LEAF1}: routing table could not be read (TimeoutError: timed out)",
        f"{LEAF2}: routing table could not be read (ValueError: Expecting value: line 1 column 1 (char 0))",
    ]
    never_read = Readings[RoutingState](values={}, errors={})
    assert traffic_problems(v, SPINE1, [leaf1], never_read, costed_out=False) == [
        f"{LEAF1}: routing table could not be read (not read)"
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


def test_a_cost_out_is_decided_from_one_reading_and_says_who_verifies_it() -> None:
    v = view()
    [change] = plan_costs(v, all_full(v), [SPINE1], "optics swap", cost_out=True)
    assert change.switch.name == SPINE1 and change.verb == "cost-out" and not change.recorded
    assert [n.name for n in change.neighbours] == [LEAF1, LEAF2]  # fra1-r02 is planned
    assert change.forced == () and change.reason == "optics swap"
    assert is_costed_out(change.intended, change.intended.devices[SPINE1]) and not is_costed_out(
        v, v.devices[SPINE1]
    )
    # a neighbour whose adjacency to the spine is down carries none of its traffic: it verifies nothing
    states = all_full(v)
    states.values[LEAF2] = RoutingState(full_neighbours_on=frozenset({"swp2"}), routes={})
    [change] = plan_costs(v, states, [SPINE1], "optics swap", cost_out=True)
    assert [n.name for n in change.neighbours] == [LEAF1]


def test_the_last_spine_is_refused_before_anything_changes_unless_forced() -> None:
    v = with_cost_out(view(), SPINE1, True)
    with pytest.raises(CostOutRefused, match="no working path to any spine") as info:
        plan_costs(v, all_full(v), [SPINE2], "second spine", cost_out=True)
    assert str(info.value).startswith(f"cost-out of {SPINE2} refused, nothing changed (force=true overrides)")
    assert LEAF1 in str(info.value) and LEAF2 in str(info.value)
    [forced] = plan_costs(v, all_full(v), [SPINE2], "second spine", cost_out=True, force=True)
    assert len(forced.forced) == 2 and all("no working path" in p for p in forced.forced)


def test_a_cost_in_needs_no_guard_and_knows_when_netbox_already_records_it() -> None:
    v = with_cost_out(view(), SPINE1, True)
    states = unreadable(all_full(v), SPINE2, f"{SPINE2}: TimeoutError: timed out")
    [back] = plan_costs(v, states, [SPINE1], "optics swapped", cost_out=False)
    assert (
        back.verb == "cost-in"
        and not back.recorded
        and not is_costed_out(back.intended, back.intended.devices[SPINE1])
    )
    [again] = plan_costs(back.intended, states, [SPINE1], "optics swapped", cost_out=False)
    assert again.recorded  # a re-run: NetBox has it, only the switch and the traffic are checked


def test_a_bad_request_is_refused_with_every_problem() -> None:
    v = view()
    with pytest.raises(SelectionError, match="reason"):
        plan_costs(v, all_full(v), [SPINE1], "swap\nwrite erase", cost_out=True)
    with pytest.raises(SelectionError) as info:
        plan_costs(v, all_full(v), ["fra1-r01-cmp1", "fra1-r02-leaf1"], "works", cost_out=True)
    assert len(info.value.problems) == 2
    assert plan_costs(v, all_full(v), [], "nothing to do", cost_out=True) == []


def test_an_evacuations_switches_are_decided_in_a_row_from_one_reading() -> None:
    """Both leaves of a rack: the second is decided on the view the first leaves (both costed out),
    from the same reading; the rack's own servers losing their paths is what an evacuation means."""
    v = view()
    states = all_full(v)
    rack = frozenset({LEAF1, LEAF2, "fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"})
    first, second = plan_costs(
        v, states, [LEAF1, LEAF2], "evacuate CHG-1: power", cost_out=True, leaving=rack
    )
    assert [first.switch.name, second.switch.name] == [LEAF1, LEAF2]
    assert not is_costed_out(first.intended, first.intended.devices[LEAF2])
    assert is_costed_out(second.intended, second.intended.devices[LEAF1]) and is_costed_out(
        second.intended, second.intended.devices[LEAF2]
    )
    assert [n.name for n in second.neighbours] == [SPINE1, SPINE2]
    # without the servers leaving, the second leaf cuts them off: refused before the first is touched
    with pytest.raises(CostOutRefused, match=f"cost-out of {LEAF2} refused") as info:
        plan_costs(v, states, [LEAF1, LEAF2], "evacuate CHG-1: power", cost_out=True)
    assert "fra1-r01-cmp1 would have no working path to any leaf" in str(info.value)


def test_fabric_apply_keeps_the_adjacencies_it_found_and_names_a_switch_it_could_not_read() -> None:
    v = view()
    before = all_full(v)
    spine1, leaf1 = v.devices[SPINE1], v.devices[LEAF1]
    assert adjacency_problems(v, [spine1, leaf1], before, all_full(v)) == []
    now = all_full(v)
    now.values[SPINE1] = RoutingState(
        full_neighbours_on=full(v, SPINE1).full_neighbours_on - {"swp1"}, routes={}
    )
    assert adjacency_problems(v, [spine1], before, now) == [f"{SPINE1}:swp1: OSPF adjacency is not Full"]
    # a link down before the push, to a switch outside it, is not the push's to bring up
    was = Readings(values={SPINE1: now.values[SPINE1]}, errors={})
    assert adjacency_problems(v, [spine1], was, now) == []
    # ... but a link between two pushed switches must come up
    assert adjacency_problems(v, [spine1, leaf1], was, now) == [f"{SPINE1}:swp1: OSPF adjacency is not Full"]
    lost = unreadable(all_full(v), LEAF1, f"{LEAF1}: OSError: No route to host")
    assert adjacency_problems(v, [leaf1], before, lost) == [
        f"{LEAF1}: routing state could not be read (OSError: No route to host)"
    ]


def test_a_view_built_from_every_site_read_holds_the_site_and_the_far_ends_of_its_cables() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    sites = {s.name: s for s in topo.sites}
    built = view_from(sites, "fra1")
    assert built.site == sites["fra1"]
    assert set(built.devices) == {d.name for d in sites["fra1"].devices} | {"core1"}
    assert built.render(built.devices[SPINE1]) == view().render(view().devices[SPINE1])
