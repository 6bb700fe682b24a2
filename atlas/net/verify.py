"""Is the fabric routing? OSPF adjacencies and routes, read as JSON from each switch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from atlas.model import Device
from atlas.net.sessions import show, switch_cli
from atlas.secrets import Credential


@dataclass(frozen=True)
class RoutingState:
    full_neighbours_on: frozenset[str]  # interfaces with a Full OSPF adjacency
    routes: frozenset[IPv4Network]


def full_interfaces(ospf_neighbours: dict[str, Any]) -> frozenset[str]:
    found = set()
    for entries in ospf_neighbours.get("neighbors", {}).values():
        for n in entries:
            state = str(n.get("nbrState", n.get("state", "")))
            if state.startswith("Full"):
                found.add(str(n.get("ifaceName", "")).split(":")[0])
    return frozenset(found)


def route_prefixes(routes: dict[str, Any]) -> frozenset[IPv4Network]:
    return frozenset(
        IPv4Network(prefix)
        for prefix, entries in routes.items()
        if any(e.get("selected") and e.get("installed", True) for e in entries)
    )


def read_routing(device: Device, cred: Credential) -> RoutingState:
    with switch_cli(device, cred) as cli:
        neighbours = json.loads(show(cli, "show ip ospf neighbor json"))
        routes = json.loads(show(cli, "show ip route json"))
    return RoutingState(full_neighbours_on=full_interfaces(neighbours), routes=route_prefixes(routes))


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
