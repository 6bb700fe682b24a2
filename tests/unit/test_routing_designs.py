"""The routing design seam on plain data: the registry chosen by the site's custom field (empty is
ospf), a design Atlas does not know refused in bring-up preflight (site and value named), in
rendering and by the sweep, and OSPF's own decisions: adjacencies, cost-out, a routing server's
configuration and drift."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, Site
from atlas.core.run import targets
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.intent import HostIntent, RoutingState
from atlas.net.render import RenderError, render, render_host, switch_intent
from atlas.net.routing import DESIGNS, default_design, design_of, design_problem
from atlas.net.routing.ospf import OSPF
from atlas.net.verify import routing_problems
from atlas.runbooks.bringup import RackScope, preflight
from atlas.runbooks.fabric import config_problems, is_costed_out, with_cost_out
from atlas.runbooks.site import SiteView
from atlas.runbooks.sweep import check_hosts
from atlas.sot.schema import COST_OUT_FIELD, ROUTING_DESIGN_FIELD
from atlas.sot.topology import load_topology

UNKNOWN = (
    "site fra1: routing design 'isis' (the site's custom field routing_design in NetBox) is not one "
    "Atlas knows (known: ebgp, ospf)"
)


def view(design: object = None) -> SiteView:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    site = site.model_copy(update={"custom_fields": {ROUTING_DESIGN_FIELD: design}})
    return SiteView(
        site=site, devices={d.name: d for d in topo.all_devices()} | {d.name: d for d in site.devices}
    )


def device(v: SiteView, name: str) -> Device:
    found = v.site.device(name)
    assert found is not None
    return found


@pytest.mark.parametrize("value", [None, "", "ospf"])
def test_a_site_without_a_design_or_with_ospf_routes_by_ospf(value: str | None) -> None:
    assert DESIGNS.names == ["ebgp", "ospf"]
    assert design_of(view(value).site) is OSPF
    assert design_problem(view(value).site) is None
    assert default_design() is OSPF


def test_a_design_atlas_does_not_know_is_refused_naming_the_site_and_the_value() -> None:
    site: Site = view("isis").site
    assert design_problem(site) == UNKNOWN
    with pytest.raises(Refused) as info:
        design_of(site)
    assert info.value.problems == [UNKNOWN]


def test_bringup_preflight_refuses_it_before_anything_is_touched() -> None:
    v = view("isis")
    problems = preflight(RackScope(site=v.site, rack="fra1-r02", devices=v.devices))
    assert problems.count(UNKNOWN) == 1  # once for the site, not once per switch
    assert preflight(RackScope(site=view().site, rack="fra1-r02", devices=view().devices)) == []


def test_fabric_apply_refuses_it_once_and_nothing_renders_for_it() -> None:
    v = view("isis")
    assert config_problems(v, list(v.active_switches)) == [UNKNOWN]
    with pytest.raises(RenderError, match="routing design 'isis'"):
        v.render(device(v, "fra1-spine1"))
    with pytest.raises(RenderError, match="routing design 'isis'"):
        render_host(v.site, device(v, "fra1-r01-cmp1"))


def test_the_sweep_leaves_every_server_of_the_site_not_checked_with_the_reason() -> None:
    v = view("isis")
    active = [d for d in v.site.devices if d.role.is_server and d.status.value == "active"]
    found = {t.name: t for t in targets(active, lambda d: Credential(username="never-used"))}
    results = check_hosts(v, found, limit=1)  # refused before any SSH
    servers = {d.name for d in active}
    assert {r.target for r in results} == servers and servers
    assert all(r.failed and r.detail == UNKNOWN for r in results)


# --- OSPF on plain data -----------------------------------------------------------------------------
def test_ospf_names_each_fabric_port_without_a_full_adjacency_and_each_missing_loopback() -> None:
    leaf = device(view(), "fra1-r01-leaf1")
    spine = IPv4Network("198.19.16.2/32")
    state = RoutingState(full_neighbours_on=frozenset({"swp1"}), routes={spine: frozenset({"swp1"})})
    assert OSPF.adjacency_problems(leaf, state, ["swp2", "swp1"]) == [
        "fra1-r01-leaf1:swp2: OSPF adjacency is not Full"
    ]
    assert routing_problems(leaf, state, ["swp1"], [spine, IPv4Network("198.19.16.3/32")], OSPF) == [
        "fra1-r01-leaf1: no route to 198.19.16.3/32"
    ]
    assert routing_problems(leaf, state, ["swp1"], [spine]) == []


def test_a_cost_out_is_the_custom_field_and_the_view_with_it_renders_max_metric() -> None:
    v = view()
    spine = device(v, "fra1-spine1")
    assert not OSPF.is_costed_out(spine)
    assert OSPF.is_costed_out(spine.model_copy(update={"custom_fields": {COST_OUT_FIELD: True}}))
    assert not OSPF.is_costed_out(spine.model_copy(update={"custom_fields": {COST_OUT_FIELD: "true"}}))
    site, devices = OSPF.with_cost_out(v.site, v.devices, spine.name, True)
    assert OSPF.is_costed_out(devices[spine.name]) and is_costed_out(
        SiteView(site, devices), device(SiteView(site, devices), spine.name)
    )
    assert not OSPF.is_costed_out(v.devices[spine.name])  # the view it was made from is unchanged
    costed = with_cost_out(v, spine.name, True)
    assert " max-metric router-lsa administrative" in costed.render(costed.devices[spine.name])
    assert switch_intent(costed.site, costed.devices[spine.name], costed.devices).cost_out
    assert "max-metric" not in render(switch_intent(v.site, spine, v.devices))


def test_ospf_routes_a_server_only_when_it_announces_and_names_what_it_lacks() -> None:
    v = view()
    compute, storage = device(v, "fra1-r01-cmp1"), device(v, "fra1-r01-sto1")
    assert OSPF.host_config(HostIntent(device=storage, uplinks=("eth1", "eth2"))) is None
    config = OSPF.host_config(HostIntent(device=compute, uplinks=("eth1", "eth2")))
    assert config is not None and "interface anycast0\n ip ospf area 0\n ip ospf passive" in config
    assert OSPF.host_problems(HostIntent(device=compute, uplinks=("eth1",))) == []
    lost = compute.model_copy(update={"loopback": None})
    loopback, uplink = OSPF.host_problems(HostIntent(device=lost, uplinks=("eth1 x",)))
    assert loopback == "fra1-r01-cmp1: announcing anycast addresses needs a loopback (OSPF router id)"
    assert uplink.startswith("fra1-r01-cmp1 interface 'eth1 x' is not a safe name")


def test_a_routing_servers_drift_names_frr_down_changed_lines_and_adjacencies_not_full() -> None:
    intended = "router ospf\n ospf router-id 198.19.0.6\n"
    assert OSPF.host_drift(intended, "", ["eth1"]) == ["FRR is not running"]
    full = '{"neighbors":{"198.19.16.4":[{"nbrState":"Full/-","ifaceName":"eth1:198.18.64.9"}]}}\n'
    running = "Building configuration...\nrouter ospf\n ospf router-id 198.19.0.6\nexit\nend\n"
    assert OSPF.host_drift(intended, full + running, ["eth1"]) == []
    assert OSPF.host_drift(intended, full + running, ["eth2", "eth1"]) == [
        "OSPF adjacency on eth2 is not Full"
    ]
    assert OSPF.host_drift(intended + " passive-interface default\n", full + running, []) == [
        "FRR running: router ospf: passive-interface default"
    ]
