"""Intended switch configuration, rendered from NetBox models with a Jinja2 template per platform.

The template sees only checked values: names pass `atlas.core.safety`, addresses are ip objects. Preflight
runs the same checks first and refuses the run; `render` refusing again is the last line of defence.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import jinja2

from atlas.core.errors import AtlasError
from atlas.core.model import Device, Endpoint, InterfaceKind, Site
from atlas.core.safety import name_problem, text_problem
from atlas.sot.schema import COST_OUT_FIELD

TEMPLATES = Path(__file__).with_name("templates")
PLATFORM_TEMPLATES = {"frr": "frr.j2"}
HOST_TEMPLATE = "frr-host.j2"
SERVICE_INTERFACE = "anycast0"  # where a server's anycast addresses live; down = not announced


class RenderError(AtlasError, ValueError):
    pass


@dataclass(frozen=True)
class Link:
    interface: str
    address: IPv4Interface
    peer: Endpoint
    routed: bool = False  # the server on the other end speaks OSPF (it announces anycast addresses)

    @property
    def description(self) -> str:
        return f"to {self.peer}"


@dataclass(frozen=True)
class StaticRoute:
    prefix: IPv4Network
    next_hop: IPv4Address


@dataclass(frozen=True)
class Timers:
    hello: int = 1
    dead: int = 4


@dataclass(frozen=True)
class SwitchIntent:
    device: Device
    fabric_links: tuple[Link, ...]
    server_links: tuple[Link, ...]
    server_routes: tuple[StaticRoute, ...]
    cost_out: bool  # OSPF maintenance: the switch carries no transit traffic while another path exists


def _address(device: Device, interface: str) -> IPv4Interface | None:
    iface = device.interface(interface)
    return iface.addresses[0] if iface is not None and iface.addresses else None


def switch_intent(site: Site, device: Device, peers: dict[str, Device]) -> SwitchIntent:
    """What `device` must carry: one link per cable with an address on our end, and a route to the
    loopback of every server behind it. `peers` holds every device the switch may be cabled to."""
    fabric, servers, routes = [], [], []
    for cable in site.cables_of(device.name):
        mine, other = cable.ends_from(device.name)
        address = _address(device, mine.interface)
        peer = peers.get(other.device)
        if address is None or peer is None:
            continue
        link = Link(interface=mine.interface, address=address, peer=other)
        if peer.role.is_switch:
            fabric.append(link)
            continue
        servers.append(Link(interface=mine.interface, address=address, peer=other, routed=bool(peer.anycast)))
        peer_address = _address(peer, other.interface)
        if peer.loopback is not None and peer_address is not None:
            routes.append(StaticRoute(prefix=peer.loopback.network, next_hop=peer_address.ip))
    key = lambda link: _natural(link.interface)  # noqa: E731
    return SwitchIntent(
        device=device,
        fabric_links=tuple(sorted(fabric, key=key)),
        server_links=tuple(sorted(servers, key=key)),
        server_routes=tuple(sorted(routes, key=lambda r: (int(r.prefix.network_address), int(r.next_hop)))),
        cost_out=device.custom_fields.get(COST_OUT_FIELD) is True,
    )


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem) :] or 0)


def intent_problems(intent: SwitchIntent) -> list[str]:
    d = intent.device
    problems = [name_problem(f"{d.name} name", d.name)]
    if d.loopback is None:
        problems.append(f"{d.name}: no loopback address in NetBox")
    if d.platform not in PLATFORM_TEMPLATES:
        problems.append(f"{d.name}: no configuration template for platform {d.platform!r}")
    for link in (*intent.fabric_links, *intent.server_links):
        problems.append(name_problem(f"{d.name} interface", link.interface))
        problems.append(text_problem(f"{d.name} {link.interface} description", link.description))
    for iface in d.interfaces:
        if iface.kind == InterfaceKind.PHYSICAL and iface.description:
            problems.append(text_problem(f"{d.name} {iface.name} description", iface.description))
    return [p for p in problems if p]


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 - device configs, not HTML; every value is checked above
)


def render(intent: SwitchIntent, timers: Timers | None = None) -> str:
    problems = intent_problems(intent)
    if problems:
        raise RenderError("; ".join(problems))
    template = _env.get_template(PLATFORM_TEMPLATES[str(intent.device.platform)])
    return template.render(
        device=intent.device,
        fabric_links=intent.fabric_links,
        server_links=intent.server_links,
        server_routes=intent.server_routes,
        cost_out=intent.cost_out,
        timers=timers or Timers(),
    )


def render_host(site: Site, device: Device, timers: Timers | None = None) -> str | None:
    """FRR of a server that announces anycast addresses (None for one that does not): OSPF on every
    cabled uplink, the service interface passive."""
    if not device.anycast:
        return None
    problems = [name_problem(f"{device.name} name", device.name)]
    if device.loopback is None:
        problems.append(f"{device.name}: announcing anycast addresses needs a loopback (OSPF router id)")
    uplinks = sorted(
        (c.ends_from(device.name)[0].interface for c in site.cables_of(device.name)), key=_natural
    )
    problems += [name_problem(f"{device.name} interface", u) for u in uplinks]
    if [p for p in problems if p]:
        raise RenderError("; ".join(p for p in problems if p))
    return _env.get_template(HOST_TEMPLATE).render(
        device=device, uplinks=uplinks, service_interface=SERVICE_INTERFACE, timers=timers or Timers()
    )
