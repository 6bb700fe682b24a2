"""Intended configuration from NetBox models: a switch's by its platform's template for its site's
routing design, a routing server's by the design.

What a switch must carry (`SwitchIntent`) and a routing server (`HostIntent`) is read from the
models here, the same for every platform and design. The templates see only checked values: names
pass `atlas.core.safety`, addresses are ip objects. Preflight runs the same checks first and
refuses the run; `render` refusing again is the last line of defence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Interface, IPv4Network

from atlas.core.errors import AtlasError
from atlas.core.model import Device, InterfaceKind, Site
from atlas.core.safety import name_problem, text_problem
from atlas.net.intent import HostIntent, Link, StaticRoute, SwitchIntent
from atlas.net.platforms import PLATFORMS, platform_of
from atlas.net.routing import (
    DESIGNS,
    design_name,
    design_of,
    design_problem,
    named_design_problem,
)
from atlas.sot.address_plan import ROLES, SERVICE_ROLES


class RenderError(AtlasError, ValueError):
    pass


def _address(device: Device, interface: str) -> IPv4Interface | None:
    iface = device.interface(interface)
    return iface.addresses[0] if iface is not None and iface.addresses else None


def switch_intent(site: Site, device: Device, peers: dict[str, Device]) -> SwitchIntent:
    """What `device` must carry: one link per cable with an address on our end, and a route to the
    loopback of every server behind it. `peers` holds every device the switch may be cabled to."""
    fabric: list[Link] = []
    borders: list[Link] = []
    servers: list[Link] = []
    routes: list[StaticRoute] = []
    for cable in site.cables_of(device.name):
        mine, other = cable.ends_from(device.name)
        address = _address(device, mine.interface)
        peer = peers.get(other.device)
        if address is None or peer is None:
            continue
        peer_address = _address(peer, other.interface)
        link = Link(
            interface=mine.interface,
            address=address,
            peer=other,
            peer_asn=peer.asn,
            peer_address=peer_address.ip if peer_address is not None else None,
        )
        if peer.role.is_switch:
            border = peer.site != device.site and device.asn is not None and peer.asn is not None
            (borders if border else fabric).append(link)
            continue
        servers.append(replace(link, routed=bool(peer.anycast)))
        if peer.loopback is not None and peer_address is not None:
            routes.append(StaticRoute(prefix=peer.loopback.network, next_hop=peer_address.ip))
    key = lambda link: _natural(link.interface)  # noqa: E731
    known = design_problem(site) is None
    return SwitchIntent(
        device=device,
        fabric_links=tuple(sorted(fabric, key=key)),
        server_links=tuple(sorted(servers, key=key)),
        border_links=tuple(sorted(borders, key=key)),
        server_routes=tuple(sorted(routes, key=lambda r: (int(r.prefix.network_address), int(r.next_hop)))),
        cost_out=known and design_of(site).is_costed_out(device),
        design=design_name(site),
        announced=announced(site),
    )


# What a fabric's routing carries: loopbacks and service addresses, and the point-to-point links'
# (a server's own traffic leaves from its link's address, as the kernel picks it)
CARRIED_ROLES = (*SERVICE_ROLES, ROLES[InterfaceKind.PHYSICAL][0])


def announced(site: Site) -> tuple[IPv4Network, ...]:
    """The address plan's prefixes a fabric's routing carries for the site, in order."""
    return tuple(
        sorted(
            {p.prefix for p in site.prefixes if p.role in CARRIED_ROLES and p.site in (None, site.name)},
            key=lambda n: (int(n.network_address), n.prefixlen),
        )
    )


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem) :] or 0)


def intent_problems(intent: SwitchIntent) -> list[str]:
    """Why the intent cannot be rendered: unsafe names and descriptions, a missing loopback, a
    platform or routing design Atlas does not know, or a platform without the design."""
    d = intent.device
    problems = [name_problem(f"{d.name} name", d.name)]
    if d.loopback is None:
        problems.append(f"{d.name}: no loopback address in NetBox")
    platform = PLATFORMS.problem(d.name, d.platform)
    design = named_design_problem(d.site, intent.design)
    problems += [platform, design]
    if platform is None and design is None and not platform_of(d).supports(intent.design):
        problems.append(
            f"{d.name}: switch platform {d.platform} has no configuration for routing design {intent.design}"
        )
    if design is None:
        problems += DESIGNS.get(d.site, intent.design).switch_problems(intent)
    for link in (*intent.fabric_links, *intent.border_links, *intent.server_links):
        problems.append(name_problem(f"{d.name} interface", link.interface))
        problems.append(text_problem(f"{d.name} {link.interface} description", link.description))
    for iface in d.interfaces:
        if iface.kind == InterfaceKind.PHYSICAL and iface.description:
            problems.append(text_problem(f"{d.name} {iface.name} description", iface.description))
    return [p for p in problems if p]


def render(intent: SwitchIntent) -> str:
    problems = intent_problems(intent)
    if problems:
        raise RenderError("; ".join(problems))
    return platform_of(intent.device).render(intent, DESIGNS.get(intent.device.site, intent.design))


def render_host(site: Site, device: Device) -> str | None:
    """A server's routing configuration by its site's routing design; None for a server that does
    not route (OSPF: one that announces no anycast address)."""
    problem = design_problem(site)
    if problem is not None:
        raise RenderError(problem)
    design = design_of(site)
    links = []
    for cable in site.cables_of(device.name):
        mine, other = cable.ends_from(device.name)
        address, peer = _address(device, mine.interface), site.device(other.device)
        peer_address = _address(peer, other.interface) if peer is not None else None
        if address is not None:
            links.append(
                Link(
                    interface=mine.interface,
                    address=address,
                    peer=other,
                    peer_asn=peer.asn if peer is not None else None,
                    peer_address=peer_address.ip if peer_address is not None else None,
                )
            )
    uplinks = sorted(
        (c.ends_from(device.name)[0].interface for c in site.cables_of(device.name)), key=_natural
    )
    links.sort(key=lambda link: _natural(link.interface))
    host = HostIntent(device=device, uplinks=tuple(uplinks), links=tuple(links))
    problems = design.host_problems(host)
    if problems:
        raise RenderError("; ".join(problems))
    return design.host_config(host)


def plan_problems(site: Site, devices: Iterable[Device], peers: Mapping[str, Device]) -> list[str]:
    """What the site's routing design needs from NetBox that `devices` lack (eBGP: ASNs from the
    site's range), each named; nothing when the design is one Atlas does not know (named apart)."""
    if design_problem(site) is not None:
        return []
    return design_of(site).plan_problems(site, devices, peers)
