"""What the switch seams exchange: a switch's intent and a routing server's, read from NetBox
models the same for every platform and design, and a switch's routing as read back from it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from atlas.core.model import Device, Endpoint

SERVICE_INTERFACE = "anycast0"  # where a server's service addresses live; down = not announced
# systemd-networkd's definition of it on a server (the host baseline writes both), and the drop-in a
# drain adds so that the interface stays down across reboots until the host is undrained
SERVICE_NETDEV_FILE = f"/etc/systemd/network/30-atlas-{SERVICE_INTERFACE}.netdev"
SERVICE_NETWORK_FILE = f"/etc/systemd/network/30-atlas-{SERVICE_INTERFACE}.network"
SERVICE_DRAINED_DROPIN = f"{SERVICE_NETWORK_FILE}.d/50-atlas-drained.conf"


@dataclass(frozen=True)
class Link:
    interface: str
    address: IPv4Interface
    peer: Endpoint
    routed: bool = False  # the server on the other end routes (it announces anycast addresses)
    peer_asn: int | None = None  # the far end's BGP ASN in NetBox (a design that peers by BGP uses it)
    peer_address: IPv4Address | None = None  # the far end's address on the link

    @property
    def description(self) -> str:
        return f"to {self.peer}"


@dataclass(frozen=True)
class StaticRoute:
    prefix: IPv4Network
    next_hop: IPv4Address


@dataclass(frozen=True)
class SwitchIntent:
    device: Device
    fabric_links: tuple[Link, ...]
    server_links: tuple[Link, ...]
    server_routes: tuple[StaticRoute, ...]
    cost_out: bool  # routing maintenance: the switch carries no transit traffic while another path exists
    design: str  # the site's routing design, by name (intent_problems names one Atlas does not know)
    # the address plan's prefixes a fabric's routing carries: loopbacks, service addresses, links
    announced: tuple[IPv4Network, ...] = ()
    # links to a switch of another site where both ends have an ASN in NetBox: the two routing
    # domains meet there by eBGP, whatever each site's design (an eBGP site behind an OSPF core)
    border_links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class HostIntent:
    """What a server's routing configuration is made of."""

    device: Device
    uplinks: tuple[str, ...]  # its cabled interfaces, in order
    service_interface: str = SERVICE_INTERFACE
    links: tuple[Link, ...] = ()  # one per uplink, in order: its address, the leaf's end and ASN


@dataclass(frozen=True)
class RoutingState:
    """A switch's routing as read from it, whatever the design: the adjacencies it has up and the
    routes it selected."""

    full_neighbours_on: frozenset[str]  # interfaces with an adjacency up (OSPF: Full)
    routes: Mapping[IPv4Network, frozenset[str]]  # selected routes -> the interfaces they leave by

    def leaving_by(self, ports: Iterable[str], destinations: Iterable[IPv4Network]) -> list[IPv4Network]:
        """The destinations whose route leaves by any of `ports`."""
        wanted = set(ports)
        return [d for d in destinations if self.routes.get(d, frozenset()) & wanted]
