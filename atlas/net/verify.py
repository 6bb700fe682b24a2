"""Is the fabric routing? OSPF adjacencies and routes, read as JSON from each switch."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from atlas.core.model import Credential, Device
from atlas.net.sessions import DeviceUnreachable, switch_show


@dataclass(frozen=True)
class RoutingState:
    full_neighbours_on: frozenset[str]  # interfaces with a Full OSPF adjacency
    routes: Mapping[IPv4Network, frozenset[str]]  # selected routes -> the interfaces they leave by

    def leaving_by(self, ports: Iterable[str], destinations: Iterable[IPv4Network]) -> list[IPv4Network]:
        """The destinations whose route leaves by any of `ports`."""
        wanted = set(ports)
        return [d for d in destinations if self.routes.get(d, frozenset()) & wanted]


def full_interfaces(ospf_neighbours: dict[str, Any]) -> frozenset[str]:
    found = set()
    for entries in ospf_neighbours.get("neighbors", {}).values():
        for n in entries:
            state = str(n.get("nbrState", n.get("state", "")))
            if state.startswith("Full"):
                found.add(str(n.get("ifaceName", "")).split(":")[0])
    return frozenset(found)


def route_table(routes: dict[str, Any]) -> dict[IPv4Network, frozenset[str]]:
    table = {}
    for prefix, entries in routes.items():
        for e in entries:
            if e.get("selected") and e.get("installed", True):
                hops = e.get("nexthops", [])
                table[IPv4Network(prefix)] = frozenset(
                    str(h["interfaceName"]) for h in hops if h.get("active") and "interfaceName" in h
                )
    return table


ROUTING_COMMANDS = ("show ip ospf neighbor json", "show ip route json")


def parse_routing(output: str) -> tuple[RoutingState, str]:
    """ROUTING_COMMANDS' two JSON documents at the start of `output`, and whatever follows them."""
    decoder = json.JSONDecoder()
    neighbours, end = decoder.raw_decode(output.lstrip())
    rest = output.lstrip()[end:].lstrip()
    routes, end = decoder.raw_decode(rest)
    state = RoutingState(full_neighbours_on=full_interfaces(neighbours), routes=route_table(routes))
    return state, rest[end:].lstrip("\n")


def read_routing(device: Device, cred: Credential) -> RoutingState:
    return parse_routing(switch_show(device, cred, *ROUTING_COMMANDS))[0]


def read_switch_state(device: Device, cred: Credential) -> tuple[str, RoutingState | None]:
    """A switch's running configuration and its routing, in one vtysh. A routing daemon that is down
    fails its commands: then the configuration alone, and no routing (the caller names the daemon
    when it configures the switch, and reads the routing again when it verifies)."""
    try:
        routing, running = parse_routing(switch_show(device, cred, *ROUTING_COMMANDS, "show running-config"))
    except (DeviceUnreachable, ValueError):
        return switch_show(device, cred, "show running-config"), None
    return running, routing


def routing_problems(
    device: Device, state: RoutingState, fabric_ports: list[str], loopbacks: list[IPv4Network]
) -> list[str]:
    problems = [
        f"{device.name}:{port}: OSPF adjacency is not Full"
        for port in sorted(fabric_ports)
        if port not in state.full_neighbours_on
    ]
    missing = sorted((p for p in loopbacks if p not in state.routes), key=lambda p: int(p.network_address))
    if missing:
        problems.append(f"{device.name}: no route to {', '.join(map(str, missing))}")
    return problems
