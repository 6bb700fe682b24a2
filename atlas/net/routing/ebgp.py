"""eBGP, the second routing design (site custom field routing_design `ebgp`): BGP as the only
routing protocol of the fabric, as RFC 7938 lays it out.

- ASNs come from NetBox, never from code: each device's custom field `bgp_asn` names one of NetBox's
  ASN objects, inside the ASN range the site's custom field `bgp_asn_range` names. A site's spines
  share one ASN; a rack's leaves share one or have one each, and leaves of different racks never
  share one; a server that announces service addresses has its own (never one of its leaves').
- Switches peer over their fabric links unnumbered (FRR's `neighbor swpN interface`, IPv6 link-local
  sessions carrying IPv4 routes), with `bgp bestpath as-path multipath-relax` so a leaf uses both
  spines. Route maps let only the address plan's loopback, service and point-to-point prefixes in
  and out (a server's own traffic leaves from its link's address), and the core's default route. A
  server that announces service addresses peers with its leaves over its links' addresses and
  announces only those addresses; it takes no routes (its default route is over its leaves).
- Cost-out: a switch whose custom field `bgp_cost_out` is true announces every route with its AS
  prepended and the graceful-shutdown community (RFC 8326), which every Atlas switch takes at local
  preference 0 (the platform's templates do), so its neighbours, and the sites beyond a border,
  prefer another path while one exists; the field is part of the intent, so the sweep and
  fabric-apply keep it.
- Borders: a link to another site's switch where both ends have an ASN is eBGP whatever that
  site's design; the core announces the default route; towards it the site is one AS (private ASNs
  removed) and what comes from it is taken at local preference 50, so a site answers its own anycast.
- Adjacencies: every fabric port of a switch has an Established session; a routing server's
  facts are BGP's sessions and FRR's running configuration, read in one vtysh.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atlas.core.model import Device, Role, Site
from atlas.net.config import diff
from atlas.net.intent import HostIntent, SwitchIntent
from atlas.net.platforms import frr
from atlas.net.routing.design import FieldDesign
from atlas.sot.schema import ASN_FIELD, ASN_RANGE_FIELD, BGP_COST_OUT_FIELD

HOST_TEMPLATE = "ebgp-host.j2"
HOST_FACTS_COMMAND = frr.vtysh("show bgp summary json", "show running-config") + " 2>/dev/null"
_NEIGHBOUR = re.compile(r"^ neighbor (\S+) (?:interface )?remote-as ", re.MULTILINE)


@dataclass(frozen=True)
class Timers:
    """BGP's timers in seconds: a lost session is noticed in `hold`; `prepend` is how many times a
    costed-out switch prepends its AS."""

    keepalive: int = 1
    hold: int = 3
    prepend: int = 3


def established(summary: Any) -> frozenset[str]:
    """The peers (an interface for an unnumbered session, else the address) Established in
    `show bgp summary json`."""
    peers = (summary or {}).get("ipv4Unicast", {}).get("peers", {})
    return frozenset(str(p) for p, s in peers.items() if s.get("state") == "Established")


def _routes_bgp(device: Device) -> bool:
    return device.role.is_switch or bool(device.anycast)


class Ebgp(FieldDesign):
    """eBGP as a RoutingDesign."""

    name = "ebgp"
    down = "BGP session is not Established"
    router_id = "BGP router id"
    cost_out_field = BGP_COST_OUT_FIELD
    host_facts_command = HOST_FACTS_COMMAND
    daemons = ("zebra", "bgpd")  # staticd runs too: FRR's init always starts it

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()

    # --- the plan in NetBox ---------------------------------------------------------------------
    def plan_problems(self, site: Site, devices: Iterable[Device], peers: Mapping[str, Device]) -> list[str]:
        chosen = [d for d in devices if _routes_bgp(d)]
        if not chosen:
            return []
        problems: list[str] = []
        if site.asn_range is None:
            problems.append(
                f"site {site.name}: no ASN range in NetBox (its custom field {ASN_RANGE_FIELD}): "
                "an eBGP site's ASNs come from one"
            )
        spines = [d for d in site.devices if d.role == Role.SPINE and d.asn is not None]
        leaves_by_asn: dict[int, set[str]] = defaultdict(set)
        for d in site.devices:
            if d.role == Role.LEAF and d.asn is not None:
                leaves_by_asn[d.asn].add(d.rack or "no rack")
        for d in chosen:
            if d.asn is None:
                problems.append(f"{d.name}: no ASN in NetBox (its custom field {ASN_FIELD})")
                continue
            if site.asn_range is not None:
                name, first, last = site.asn_range
                if not first <= d.asn <= last:
                    problems.append(
                        f"{d.name}: ASN {d.asn} is outside the site's ASN range {name} ({first}-{last})"
                    )
            if d.role == Role.LEAF and len(leaves_by_asn[d.asn]) > 1:
                racks = ", ".join(sorted(leaves_by_asn[d.asn]))
                problems.append(
                    f"{d.name}: ASN {d.asn} is shared by leaves of racks {racks}: a rack's leaves may "
                    "share one, leaves of different racks never do"
                )
            if d.role == Role.SPINE:
                other = sorted(f"{s.name} ({s.asn})" for s in spines if s.asn != d.asn)
                if other:
                    problems.append(
                        f"{d.name}: ASN {d.asn} is not that of {', '.join(other)}: a site's spines share one"
                    )
            elif any(s.asn == d.asn for s in spines):
                problems.append(f"{d.name}: ASN {d.asn} is the spines' ASN")
            for cable in site.cables_of(d.name):
                mine, far = cable.ends_from(d.name)
                peer = peers.get(far.device)
                if peer is None or not _routes_bgp(peer):
                    continue
                if peer.asn is None and peer.site != site.name:
                    problems.append(
                        f"{peer.name} (site {peer.site}): no ASN in NetBox (its custom field "
                        f"{ASN_FIELD}): {d.name}:{mine.interface} peers with it by eBGP"
                    )
                elif peer.asn == d.asn and not d.role.is_switch:
                    problems.append(f"{d.name}: ASN {d.asn} is that of its leaf {peer.name}")
        return list(dict.fromkeys(problems))

    # --- switches -------------------------------------------------------------------------------
    def switch_variables(self) -> Mapping[str, object]:
        return {"timers": self.timers}

    def switch_problems(self, intent: SwitchIntent) -> list[str]:
        d = intent.device
        problems = [] if d.asn is not None else [f"{d.name}: no ASN in NetBox (its custom field {ASN_FIELD})"]
        problems += [
            f"{d.name}:{link.interface}: {link.peer.device} has no ASN in NetBox to peer with"
            for link in intent.fabric_links
            if link.peer_asn is None
        ]
        problems += [
            f"{d.name}:{link.interface}: the server {link.peer.device} announces service addresses "
            "but has no address on the link or no ASN in NetBox"
            for link in intent.server_links
            if link.routed and (link.peer_asn is None or link.peer_address is None)
        ]
        if not intent.announced:
            problems.append(f"{d.name}: the site has no loopback prefix in NetBox: BGP would carry nothing")
        return problems

    # --- servers that route ---------------------------------------------------------------------
    def host_problems(self, host: HostIntent) -> list[str]:
        d = host.device
        if not d.anycast:
            return []
        problems = self.announcing_problems(host)
        if d.asn is None:
            problems.append(f"{d.name}: announcing anycast addresses on an eBGP site needs an ASN in NetBox")
        for link in host.links:
            if link.peer_address is None or link.peer_asn is None:
                problems.append(f"{d.name}:{link.interface}: its leaf {link.peer} has no address or no ASN")
        if not host.links:
            problems.append(f"{d.name}: no cabled uplink with an address to peer over")
        return problems

    def host_config(self, host: HostIntent) -> str | None:
        """BGP to each leaf over the link's addresses, announcing only the service addresses; None
        for a server that announces nothing (its loopback is a static route on its leaves)."""
        if not host.device.anycast:
            return None
        return frr.template(HOST_TEMPLATE).render(device=host.device, links=host.links, timers=self.timers)

    def host_drift(self, intended: str, facts: str, uplinks: Iterable[str]) -> list[str]:
        summary, running = split_host_facts(facts)
        if not running.strip():
            return ["FRR is not running"]
        drift = [f"FRR running: {line}" for line in diff(running, intended, frr.FRR).summary]
        up = established(summary)
        drift += [
            f"BGP session with {peer} is not Established"
            for peer in _NEIGHBOUR.findall(intended)
            if peer not in up
        ]
        return drift


def split_host_facts(text: str) -> tuple[Any, str]:
    """HOST_FACTS_COMMAND's output: BGP's summary as JSON, then the running configuration."""
    try:
        [summary], running = frr.split_json(text, 1)
    except ValueError:
        return None, text
    return summary, running


EBGP = Ebgp()
