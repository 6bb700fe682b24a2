"""Is the fabric routing? Each switch's routing state read through its platform, checked by the
site's routing design: adjacencies up on its fabric ports, a route to every expected loopback.

`design` is the site's (atlas.net.routing.design_of); omitted, the default design."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network

from atlas.core.model import Credential, Device
from atlas.net.intent import RoutingState
from atlas.net.platforms import platform_of
from atlas.net.routing import RoutingDesign, default_design
from atlas.net.sessions import DeviceUnreachable


def read_routing(device: Device, cred: Credential, design: RoutingDesign | None = None) -> RoutingState:
    platform, design = platform_of(device), design or default_design()
    return platform.parse_routing(design, platform.show(device, cred, *platform.routing_commands(design)))[0]


def read_switch_state(
    device: Device, cred: Credential, design: RoutingDesign | None = None
) -> tuple[str, RoutingState | None]:
    """A switch's running configuration and its routing, in one read. A routing daemon that is down
    fails its commands: then the configuration alone, and no routing (the caller names the daemon
    when it configures the switch, and reads the routing again when it verifies)."""
    platform, design = platform_of(device), design or default_design()
    commands = (*platform.routing_commands(design), platform.running_config_command)
    try:
        routing, running = platform.parse_routing(design, platform.show(device, cred, *commands))
    except (DeviceUnreachable, ValueError):
        return platform.show(device, cred, platform.running_config_command), None
    return running, routing


def routing_problems(
    device: Device,
    state: RoutingState,
    fabric_ports: Iterable[str],
    loopbacks: Iterable[IPv4Network],
    design: RoutingDesign | None = None,
) -> list[str]:
    """Every fabric port without its adjacency up, and the loopbacks the switch has no route to."""
    problems = (design or default_design()).adjacency_problems(device, state, fabric_ports)
    missing = sorted((p for p in loopbacks if p not in state.routes), key=lambda p: int(p.network_address))
    if missing:
        problems.append(f"{device.name}: no route to {', '.join(map(str, missing))}")
    return problems
