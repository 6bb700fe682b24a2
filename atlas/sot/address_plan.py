"""The address plan is intent too: checked from NetBox alone, before any device is touched (pure).

- every address lies in a NetBox prefix of the role it is used for (a management address in one of
  role `management`, a loopback in `loopback`, a fabric port's in `fabric`, a BMC's in `oob`, a
  service address in `anycast`, or `loopback` where the plan keeps them with the loopbacks), in the
  device's site where a prefix is scoped to a site;
- the two ends of every cabled point-to-point link are in one subnet of a point-to-point size (/31,
  or /30 with neither end the network or broadcast address), and distinct;
- a cable that leaves the site ends on the core (a device of role core), nothing else; every cable
  joins roles a leaf-spine fabric joins (spine-leaf, leaf-server, core-spine, core-client).

A server's gateways are the leaf ends of its links: with the link rules they are the addresses it
routes through. Each problem names the objects involved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Interface

from atlas.core.model import Cable, Device, InterfaceKind, Prefix, Role, Site

# What each kind of address is for, and the prefix roles that may hold it
ROLES: dict[InterfaceKind, tuple[str, ...]] = {
    InterfaceKind.MGMT: ("management",),
    InterfaceKind.LOOPBACK: ("loopback",),
    InterfaceKind.PHYSICAL: ("fabric",),
    InterfaceKind.OOB: ("oob",),
}
SERVICE_ROLES = ("anycast", "loopback")
PLAN_ROLES = tuple(sorted({r for roles in ROLES.values() for r in roles} | set(SERVICE_ROLES)))
# The links a leaf-spine fabric has, by the roles of their two ends (the core joins sites and clients)
LINKS = frozenset(
    frozenset(pair)
    for pair in (
        (Role.SPINE, Role.LEAF),
        (Role.LEAF, Role.COMPUTE),
        (Role.LEAF, Role.STORAGE),
        (Role.CORE, Role.SPINE),
        (Role.CORE, Role.CLIENT),
    )
)
USES = {
    InterfaceKind.MGMT: "management address",
    InterfaceKind.LOOPBACK: "loopback",
    InterfaceKind.PHYSICAL: "fabric address",
    InterfaceKind.OOB: "BMC address",
}


def address_problems(devices: Iterable[Device], prefixes: Iterable[Prefix]) -> list[str]:
    """Every address of `devices` that lies in no prefix of the role it is used for."""
    plan = list(prefixes)
    problems = []
    for d in devices:
        for i in d.interfaces:
            for a in i.addresses:
                service = i.kind == InterfaceKind.LOOPBACK and a in d.anycast
                roles = SERVICE_ROLES if service else ROLES[i.kind]
                usable = [p for p in plan if p.role in roles and p.site in (None, d.site)]
                if any(a.ip in p.prefix for p in usable):
                    continue
                use = "service address" if service else USES[i.kind]
                held = (
                    f"the prefixes of that role: {', '.join(str(p.prefix) for p in usable)}"
                    if usable
                    else f"NetBox has no prefix of role {' or '.join(roles)} for site {d.site}"
                )
                problems.append(
                    f"{d.name}:{i.name}: {use} {a} lies in no prefix of role {' or '.join(roles)} ({held})"
                )
    return problems


def _fabric_address(device: Device, interface: str) -> IPv4Interface | None:
    i = device.interface(interface)
    if i is None or i.kind != InterfaceKind.PHYSICAL or not i.addresses:
        return None
    return i.addresses[0]


def link_problems(cables: Iterable[Cable], devices: Mapping[str, Device], site: str) -> list[str]:
    """Every cable of `site` that leaves it for anything but the core or joins roles the fabric does
    not join, and every cabled link whose two addressed ends are not one point-to-point subnet."""
    problems = []
    for c in cables:
        a, b = devices.get(c.a.device), devices.get(c.b.device)
        name = f"{c.a.device}:{c.a.interface} - {c.b.device}:{c.b.interface}"
        if a is None or b is None:
            continue  # a far end NetBox did not return: the cabling check names it
        if a.site != b.site and Role.CORE not in (a.role, b.role):
            outside = b if a.site == site else a
            problems.append(
                f"cable {name} leaves site {site} for {outside.name} of site {outside.site} "
                f"(role {outside.role.value}): only the core joins sites"
            )
            continue
        if frozenset((a.role, b.role)) not in LINKS:
            peers = sorted(str(r.value) for pair in LINKS if a.role in pair for r in pair if r != a.role)
            problems.append(
                f"cable {name} joins {a.role.value} {a.name} to {b.role.value} {b.name}: a {a.role.value} "
                f"is cabled to {' or '.join(peers) or 'nothing'} in this fabric"
            )
            continue
        x, y = _fabric_address(a, c.a.interface), _fabric_address(b, c.b.interface)
        if x is None or y is None:
            continue  # an end without an address: preflight names it where it matters
        if x.network != y.network:
            problems.append(
                f"link {name}: its ends are not in one subnet ({c.a.device}:{c.a.interface} {x}, "
                f"{c.b.device}:{c.b.interface} {y})"
            )
        elif x.ip == y.ip:
            problems.append(f"link {name}: both ends have address {x.ip}")
        elif x.network.prefixlen not in (30, 31):
            problems.append(
                f"link {name}: a /{x.network.prefixlen} subnet ({x.network}); a point-to-point link is /31 or /30"
            )
        elif x.network.prefixlen == 30:
            edges = {x.network.network_address, x.network.broadcast_address}
            for end, addr in ((f"{c.a.device}:{c.a.interface}", x), (f"{c.b.device}:{c.b.interface}", y)):
                if addr.ip in edges:
                    problems.append(
                        f"link {name}: {end} has {addr.ip}, the network or broadcast address of {x.network}"
                    )
    return problems


def device_problems(device: Device, site: Site, devices: Mapping[str, Device]) -> list[str]:
    """The address plan's problems that involve `device`: its addresses and its cables."""
    return address_problems([device], site.prefixes) + link_problems(
        site.cables_of(device.name), devices, site.name
    )
