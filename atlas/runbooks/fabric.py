"""Fabric maintenance on the switch-config machinery: chosen switches brought to their NetBox intent,
and OSPF cost-out / cost-in.

A cost-out is part of the intent (the device's `ospf_cost_out` custom field renders `max-metric
router-lsa administrative`), so the consistency sweep and fabric-apply keep it instead of undoing it.
Whether traffic really avoids a switch is read from its neighbours' routing tables, not assumed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from ipaddress import IPv4Network

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, DeviceStatus, Role
from atlas.core.parallel import each_device
from atlas.core.run import Result
from atlas.net.render import RenderError, intent_problems, switch_intent
from atlas.net.sessions import DeviceUnreachable
from atlas.net.switch import apply_config
from atlas.net.verify import RoutingState, read_routing
from atlas.runbooks.site import SiteView
from atlas.sot.schema import COST_OUT_FIELD

# Who a device's traffic leaves by: a device keeps at least one of these or it is cut off.
UPSTREAM = {Role.COMPUTE: Role.LEAF, Role.STORAGE: Role.LEAF, Role.LEAF: Role.SPINE, Role.SPINE: Role.CORE}


class SelectionError(Refused):
    headline = "{n} problem(s) in the request; nothing was touched"


# --- selection (pure) ---------------------------------------------------------------------------
def select_switches(view: SiteView, rack: str | None, names: list[str]) -> list[Device]:
    """The active switches of the rack, or the named ones, or all of the site's; every problem named."""
    problems = []
    if rack is not None and not any(r.name == rack for r in view.site.racks):
        problems.append(f"rack {rack!r} is not in site {view.site.name!r}")
    chosen: list[Device] = []
    for name in names:
        device = view.site.device(name)
        if device is None:
            problems.append(f"switch {name!r} is not in site {view.site.name!r}")
        elif not device.role.is_switch:
            problems.append(f"{name} is a {device.role.value}, not a switch")
        elif device.status != DeviceStatus.ACTIVE:
            problems.append(f"{name} is {device.status.value}: a planned rack is brought up by rack-bringup")
        else:
            chosen.append(device)
    if rack is not None and not problems:
        chosen += [d for d in view.active_switches if d.rack == rack and d not in chosen]
        if not chosen:
            problems.append(f"rack {rack} has no active switch")
    if problems:
        raise SelectionError(problems)
    return chosen or list(view.active_switches)


def config_problems(view: SiteView, switches: Iterable[Device]) -> list[str]:
    return [p for d in switches for p in intent_problems(switch_intent(view.site, d, view.devices))]


# --- fabric-apply -------------------------------------------------------------------------------
def apply_intent(
    view: SiteView, switches: list[Device], creds: dict[tuple[str, str], Credential], dry_run: bool
) -> list[Result]:
    def one(d: Device) -> Result:
        try:
            intended = view.render(d)
        except RenderError as e:
            return Result.failure(d.name, "switch-config", str(e))
        return apply_config(d, creds[(d.site, d.role.value)], intended, dry_run=dry_run)

    return each_device(one, switches)


# --- cost-out / cost-in -------------------------------------------------------------------------
def is_costed_out(device: Device) -> bool:
    return device.custom_fields.get(COST_OUT_FIELD) is True


def with_cost_out(view: SiteView, name: str, cost_out: bool) -> SiteView:
    """The view as it will be once NetBox records the switch's new maintenance state."""
    device = view.devices[name]
    changed = device.model_copy(update={"custom_fields": device.custom_fields | {COST_OUT_FIELD: cost_out}})
    site = view.site.model_copy(
        update={"devices": tuple(changed if d.name == name else d for d in view.site.devices)}
    )
    return SiteView(site=site, devices=view.devices | {name: changed})


def read_states(
    view: SiteView, creds: dict[tuple[str, str], Credential], devices: Iterable[Device]
) -> dict[str, RoutingState | None]:
    """Live OSPF state per switch; None for a switch that could not be read."""

    def one(d: Device) -> RoutingState | None:
        try:
            return read_routing(d, creds[(d.site, d.role.value)])
        except DeviceUnreachable:
            return None

    todo = list(devices)
    return dict(zip((d.name for d in todo), each_device(one, todo), strict=True))


def last_path_problems(
    view: SiteView,
    costing_out: set[str],
    states: dict[str, RoutingState | None],
    leaving: frozenset[str] = frozenset(),
) -> list[str]:
    """Every active device of the site that would keep no working path upstream. A path works when
    its switch is not costed out (NetBox), answers, and, between switches, the link's adjacency is
    Full as the device itself sees it. Devices `leaving` (an evacuation's own scope) are meant to."""
    down = costing_out | {d.name for d in view.active_switches if is_costed_out(d)}
    problems = []
    for d in view.devices.values():
        wanted = UPSTREAM.get(d.role)
        if d.status != DeviceStatus.ACTIVE or wanted is None or d.name in leaving:
            continue
        ups = [
            (port, p)
            for port, p in view.peers(d.name)
            if p.role == wanted and p.status == DeviceStatus.ACTIVE
        ]
        if not ups or not costing_out & {p.name for _, p in ups}:
            continue

        def works(port: str, up: Device, device: Device = d) -> bool:
            if up.name in down or (up.name in states and states[up.name] is None):
                return False
            mine = states.get(device.name)
            return not device.role.is_switch or (mine is not None and port in mine.full_neighbours_on)

        if not any(works(port, up) for port, up in ups):
            names = ", ".join(sorted({p.name for _, p in ups}))
            problems.append(f"{d.name} would have no working path to any {wanted.value} ({names})")
    return problems


def reachable_without(view: SiteView, start: str, avoid: str, past_costed_out: bool = True) -> set[str]:
    """Devices `start` reaches over cables without passing through `avoid` (the cost-out target), nor,
    unless `past_costed_out`, through switches already costed out (they are no other way either).
    Servers are reached, never passed through: they do not forward."""
    seen, todo = {start}, deque([start])
    while todo:
        for _, peer in view.peers(todo.popleft()):
            if peer.name in seen or peer.name == avoid or (not past_costed_out and is_costed_out(peer)):
                continue
            seen.add(peer.name)
            if peer.role.is_switch:
                todo.append(peer.name)
    return seen


def transit_destinations(
    view: SiteView, neighbour: str, target: str, past_costed_out: bool = True
) -> list[IPv4Network]:
    """Loopbacks of the site's active devices that `neighbour` can reach without `target`: after a
    cost-out their routes must avoid it (another costed-out switch is no other way: several are
    costed out one after another in an evacuation); after a cost-in some of them use it again."""
    others = reachable_without(view, neighbour, target, past_costed_out) - {neighbour}
    return sorted(
        {
            d.loopback.network
            for d in view.site.devices
            if d.name in others and d.loopback is not None and d.status == DeviceStatus.ACTIVE
        },
        key=lambda n: int(n.network_address),
    )


def switch_neighbours(view: SiteView, target: str) -> list[Device]:
    found = {p.name: p for _, p in view.peers(target) if p.role.is_switch and p.status == DeviceStatus.ACTIVE}
    return [found[name] for name in sorted(found)]


def adjacent_neighbours(view: SiteView, target: str, states: dict[str, RoutingState | None]) -> list[Device]:
    """The switch neighbours whose adjacency to `target` is Full now: the ones that carry its traffic
    and whose routing tables show a cost-out or cost-in (a cost-out keeps adjacencies up)."""
    found = []
    for n in switch_neighbours(view, target):
        state = states.get(n.name)
        if state is not None and set(view.ports_towards(n.name, target)) <= state.full_neighbours_on:
            found.append(n)
    return found


def traffic_problems(
    view: SiteView,
    target: str,
    neighbours: list[Device],
    states: dict[str, RoutingState | None],
    costed_out: bool,
) -> list[str]:
    """From each neighbour's routing table: after a cost-out no route that has another way leaves
    towards `target`; after a cost-in each neighbour sends some traffic through it again."""
    problems = []
    for n in neighbours:
        state = states.get(n.name)
        if state is None:
            problems.append(f"{n.name}: routing table could not be read")
            continue
        ports = view.ports_towards(n.name, target)
        through = state.leaving_by(ports, transit_destinations(view, n.name, target, not costed_out))
        if costed_out and through:
            listed = ", ".join(map(str, through[:5])) + (" ..." if len(through) > 5 else "")
            problems.append(f"{n.name} still routes {len(through)} destination(s) through {target}: {listed}")
        if not costed_out and not through and transit_destinations(view, n.name, target):
            problems.append(f"{n.name} routes nothing through {target} yet")
        if not costed_out and not set(ports) <= state.full_neighbours_on:
            problems.append(f"{n.name}: the adjacency to {target} is not Full")
    return problems
