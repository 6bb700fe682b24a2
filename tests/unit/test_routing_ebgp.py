"""The eBGP routing design on plain data: the ASN plan refused with each problem named, the switch
and routing-server configurations it renders (unnumbered fabric sessions, route maps, cost-out by
AS-path prepend), the border an OSPF core keeps with an eBGP site, and BGP's state as FRR answers it."""

from __future__ import annotations

import json

from atlas.core.model import Device, Role
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.config import diff
from atlas.net.platforms.frr import FRR
from atlas.net.render import plan_problems, render, render_host, switch_intent
from atlas.net.routing import design_of
from atlas.net.routing.ebgp import EBGP
from atlas.runbooks.fabric import config_problems, with_cost_out
from atlas.runbooks.site import SiteView
from atlas.sot.schema import ROUTING_DESIGN_FIELD
from atlas.sot.topology import load_topology

FIRST = 65100
CORE = 65001


def asns(devices: dict[str, Device], site: str) -> dict[str, int]:
    """RFC 7938's plan: the spines share one, each rack's leaves one, each routing server its own."""
    racks = sorted({d.rack for d in devices.values() if d.site == site and d.rack})
    servers = sorted(n for n, d in devices.items() if d.site == site and d.anycast)
    plan = {"core1": CORE}
    for n, d in devices.items():
        if d.site != site:
            continue
        if d.role == Role.SPINE:
            plan[n] = FIRST
        elif d.role == Role.LEAF and d.rack:
            plan[n] = FIRST + 1 + racks.index(d.rack)
        elif n in servers:
            plan[n] = FIRST + 50 + servers.index(n)
    return plan


def view(site: str = "ams1", change: dict[str, int | None] | None = None, ranged: bool = True) -> SiteView:
    topo = load_topology(DEFAULT_TOPOLOGY)
    everything = {d.name: d for d in topo.all_devices()}
    plan: dict[str, int | None] = {**asns(everything, site), **(change or {})}

    def numbered(d: Device) -> Device:
        return d.model_copy(update={"asn": plan.get(d.name)})

    read = topo.site_as_read(site)
    read = read.model_copy(
        update={
            "custom_fields": {ROUTING_DESIGN_FIELD: "ebgp"},
            "asn_range": (f"{site} ASNs", FIRST, FIRST + 99) if ranged else None,
            "devices": tuple(numbered(d) for d in read.devices),
        }
    )
    return SiteView(
        site=read, devices={n: numbered(d) for n, d in everything.items()} | {d.name: d for d in read.devices}
    )


def device(v: SiteView, name: str) -> Device:
    return v.devices[name]


def test_a_sound_asn_plan_has_no_problem_and_the_site_routes_by_ebgp() -> None:
    v = view()
    assert design_of(v.site) is EBGP
    assert plan_problems(v.site, v.site.devices, v.devices) == []
    assert config_problems(v, list(v.active_switches)) == []


def test_every_bad_asn_is_refused_and_named() -> None:
    v = view(
        change={
            "ams1-r01-leaf2": None,
            "ams1-r02-leaf1": FIRST + 1,
            "ams1-spine2": 64000,
            "ams1-r01-cmp1": FIRST + 1,
        }
    )
    problems = plan_problems(v.site, v.site.devices, v.devices)
    assert "ams1-r01-leaf2: no ASN in NetBox (its custom field bgp_asn)" in problems
    assert (
        f"ams1-r01-leaf1: ASN {FIRST + 1} is shared by leaves of racks ams1-r01, ams1-r02: a rack's leaves "
        "may share one, leaves of different racks never do"
    ) in problems
    assert (
        f"ams1-spine2: ASN 64000 is outside the site's ASN range ams1 ASNs ({FIRST}-{FIRST + 99})" in problems
    )
    assert (
        f"ams1-spine1: ASN {FIRST} is not that of ams1-spine2 (64000): a site's spines share one" in problems
    )
    assert f"ams1-r01-cmp1: ASN {FIRST + 1} is that of its leaf ams1-r01-leaf1" in problems
    no_core = view(change={"core1": None})
    assert (
        "core1 (site core): no ASN in NetBox (its custom field bgp_asn): ams1-spine1:swp32 peers with it by eBGP"
        in plan_problems(no_core.site, no_core.site.devices, no_core.devices)
    )
    unranged = view(ranged=False)
    assert plan_problems(unranged.site, unranged.site.devices, unranged.devices) == [
        "site ams1: no ASN range in NetBox (its custom field bgp_asn_range): an eBGP site's ASNs come from one"
    ]


def test_a_leaf_peers_unnumbered_with_both_spines_and_carries_only_the_plans_prefixes() -> None:
    v = view()
    leaf = render(switch_intent(v.site, device(v, "ams1-r01-leaf1"), v.devices))
    assert "ip ospf" not in leaf and "router ospf" not in leaf
    assert f"router bgp {FIRST + 1}\n" in leaf and " bgp bestpath as-path multipath-relax" in leaf
    assert f" neighbor swp1 interface remote-as {FIRST}\n neighbor swp1 timers 1 3" in leaf
    assert "  neighbor swp1 allowas-in origin" in leaf  # the rack's other leaf shares its ASN
    # loopbacks and service addresses, and the links' (a server's own traffic leaves from its link)
    assert "ip prefix-list ATLAS-ANNOUNCED seq 5 permit 198.18.64.0/18 le 32" in leaf
    assert "ip prefix-list ATLAS-ANNOUNCED seq 10 permit 198.19.0.0/22 le 32" in leaf
    # the rack's two servers that announce service addresses, by their link's address and own ASN
    assert f" neighbor 198.18.64.53 remote-as {FIRST + 50}" in leaf
    assert f" neighbor 198.18.64.57 remote-as {FIRST + 51}" in leaf
    assert "  neighbor 198.18.64.53 route-map ATLAS-NOTHING out" in leaf  # a server takes no routes
    spine = render(switch_intent(v.site, device(v, "ams1-spine1"), v.devices))
    assert "allowas-in" not in spine and f" neighbor swp32 interface remote-as {CORE}" in spine
    # to the core the site is one AS (its own paths prefered inside it), the default route taken in
    assert "  neighbor swp32 remove-private-AS all\n  neighbor swp32 route-map ATLAS-BORDER-IN in" in spine
    assert "route-map ATLAS-IN permit 20\n match ip address prefix-list ATLAS-DEFAULT" in spine
    assert "set as-path prepend" not in spine
    costed = with_cost_out(v, "ams1-spine1", True)
    rendered = costed.render(costed.devices["ams1-spine1"])
    assert (
        f" set as-path prepend {FIRST} {FIRST} {FIRST}\n set community graceful-shutdown additive" in rendered
    )
    # and every neighbour takes what a costed-out switch announces at the lowest preference
    assert "route-map ATLAS-IN permit 5\n match community ATLAS-GSHUT\n set local-preference 0" in spine


def test_an_ospf_core_meets_an_ebgp_site_by_ebgp_on_those_links_only() -> None:
    v = view()
    core_site = load_topology(DEFAULT_TOPOLOGY).site_as_read("core")
    core_site = core_site.model_copy(
        update={
            "devices": tuple(d.model_copy(update={"asn": v.devices[d.name].asn}) for d in core_site.devices)
        }
    )
    intent = switch_intent(core_site, v.devices["core1"], v.devices)
    assert [link.peer.device for link in intent.border_links] == ["ams1-spine1", "ams1-spine2"]
    config = render(intent)
    assert f"router bgp {CORE}" in config and f" neighbor swp3 interface remote-as {FIRST}" in config
    assert " redistribute bgp route-map ATLAS-ANNOUNCED" in config
    assert "  neighbor swp3 default-originate" in config  # the datacenter's way out, for the eBGP site
    assert (
        "route-map ATLAS-BORDER-IN permit 10\n match ip address prefix-list ATLAS-ANNOUNCED\n set local-preference 50"
        in config
    )
    swp1, swp3 = (config.split(f"interface {p}\n")[1].split("interface ")[0] for p in ("swp1", "swp3"))
    assert "ip ospf area 0" in swp1 and "ip ospf" not in swp3  # fra1 stays OSPF, ams1 is BGP
    # an OSPF switch without an ASN has no border: the core as it was before
    plain = switch_intent(core_site, v.devices["core1"].model_copy(update={"asn": None}), v.devices)
    assert plain.border_links == () and "router bgp" not in render(plain)


def test_a_routing_server_peers_with_its_leaves_by_address_and_announces_only_its_service() -> None:
    v = view()
    config = render_host(v.site, device(v, "ams1-r01-cmp1"))
    assert config is not None and f"router bgp {FIRST + 50}" in config
    assert f"remote-as {FIRST + 1}" in config and "interface" not in config.split("router bgp")[1]
    assert "ip prefix-list ATLAS-SERVICE seq 5 permit 198.19.3.254/32" in config
    assert "route-map ATLAS-NOTHING deny 10" in config
    assert render_host(v.site, device(v, "ams1-r01-sto1")) is None  # announces nothing


SUMMARY = {
    "ipv4Unicast": {
        "peers": {
            "swp1": {"state": "Established", "idType": "interface", "remoteAs": FIRST},
            "swp2": {"state": "Active", "idType": "interface", "remoteAs": FIRST},
            "198.18.64.57": {"state": "Established", "idType": "ipv4", "remoteAs": FIRST + 50},
        }
    }
}


def test_bgp_state_as_frr_answers_it_names_each_session_not_established() -> None:
    v = view()
    leaf = device(v, "ams1-r01-leaf1")
    routes = {"198.19.0.14/32": [{"selected": True, "nexthops": [{"interfaceName": "swp1", "active": True}]}]}
    state, rest = FRR.parse_routing(EBGP, json.dumps(SUMMARY) + "\n" + json.dumps(routes) + "\nrunning")
    assert state.full_neighbours_on == {"swp1"} and rest == "running"
    assert EBGP.adjacency_problems(leaf, state, ["swp1", "swp2"]) == [
        "ams1-r01-leaf1:swp2: BGP session is not Established"
    ]
    intended = (
        "router bgp 65150\n neighbor 198.18.64.57 remote-as 65101\n neighbor 198.18.64.59 remote-as 65101\n"
    )
    running = "Building configuration...\n" + intended + "exit\nend\n"
    assert EBGP.host_drift(intended, "", ["eth1"]) == ["FRR is not running"]
    assert EBGP.host_drift(intended, json.dumps(SUMMARY) + "\n" + running, ["eth1", "eth2"]) == [
        "BGP session with 198.18.64.59 is not Established"
    ]


def test_a_cost_in_takes_the_prepend_and_the_community_back_as_frr_takes_them() -> None:
    v = view()
    costed = with_cost_out(v, "ams1-spine1", True)
    running = costed.render(costed.devices["ams1-spine1"])
    change = diff(running, v.render(v.devices["ams1-spine1"]), FRR)
    # FRR refuses `no set as-path prepend 65100 65100 65100`: the command alone takes it back
    assert sorted(change.summary) == [
        "route-map ATLAS-OUT permit 10: no set as-path prepend",
        "route-map ATLAS-OUT permit 10: no set community",
        "route-map ATLAS-OUT permit 20: no set as-path prepend",
        "route-map ATLAS-OUT permit 20: no set community",
    ]
