"""Fabric maintenance on the switch-config machinery: chosen switches brought to their NetBox intent,
and cost-out / cost-in as the site's routing design does them (OSPF: `max-metric router-lsa`).

A cost-out is part of the intent (a custom field of the switch, the design's `cost_out_field`, that
its template renders), so the consistency sweep and fabric-apply keep it instead of undoing it.
Whether traffic really avoids a switch is read from its neighbours' routing tables, not assumed.

A cost change is decided on the site view and one reading of the switches' routing state
(`plan_costs`, pure), then carried out switch by switch (`change_cost`): several switches in a row
(an evacuation) need neither NetBox nor the switches read again between them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

import pynetbox

from atlas.core.errors import Failed, Refused
from atlas.core.model import Device, DeviceStatus, Role
from atlas.core.run import Events, Readings, Result, Results, poll_until, read_each, run_each
from atlas.core.safety import text_problem
from atlas.net.intent import RoutingState
from atlas.net.render import intent_problems, plan_problems, switch_intent
from atlas.net.routing import RoutingDesign, design_of
from atlas.net.switch import STEP, apply_config
from atlas.net.verify import read_routing, routing_problems
from atlas.runbooks.site import Creds, SiteView
from atlas.sot.address_plan import address_problems, link_problems
from atlas.sot.write import add_journal_entries, add_journal_entry, set_custom_fields

# Who a device's traffic leaves by: a device keeps at least one of these or it is cut off.
UPSTREAM = {Role.COMPUTE: Role.LEAF, Role.STORAGE: Role.LEAF, Role.LEAF: Role.SPINE, Role.SPINE: Role.CORE}
VERIFY_TIMEOUT_S = 60.0  # OSPF floods a new LSA and reruns SPF well within it


class SelectionError(Refused):
    headline = "{n} problem(s) in the request; nothing was touched"


class FabricFailed(Failed):
    """A change that was made and did not verify; the message says what is left."""


class CostOutRefused(Failed):
    """A cost-out that would leave something without a working path; nothing was changed."""


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
    """Why the switches' configuration cannot be rendered, each problem once: a switch platform or a
    routing design Atlas does not know, unsafe names, ...; checked before anything is touched."""
    chosen = list(switches)
    names = {d.name for d in chosen}
    found = [p for d in chosen for p in intent_problems(switch_intent(view.site, d, view.devices))]
    found += address_problems(chosen, view.site.prefixes)  # the address plan is intent too
    found += plan_problems(view.site, chosen, view.devices)  # and the routing design's (eBGP: ASNs)
    found += link_problems(
        [c for c in view.site.cables if {c.a.device, c.b.device} & names], view.devices, view.site.name
    )
    return list(dict.fromkeys(found))


# --- reading and pushing ------------------------------------------------------------------------
def read_states(view: SiteView, creds: Creds, devices: Iterable[Device]) -> Readings[RoutingState]:
    """Live routing state per switch as the site's routing design reads it, or why a switch's could
    not be read."""
    design = design_of(view.site)
    return read_each(lambda d: read_routing(d, creds[(d.site, d.role.value)], design), devices)


def not_read(states: Readings[RoutingState], name: str, what: str) -> str:
    """The problem of a switch whose `what` the reading has not: why, when it says."""
    why = states.errors.get(name, "not read").removeprefix(f"{name}: ")
    return f"{name}: {what} could not be read ({why})"


def apply_intent(view: SiteView, switches: list[Device], creds: Creds, dry_run: bool) -> Results:
    """Each switch brought to the configuration the view renders for it (only the difference is
    pushed); a dry run reports the difference. A switch that fails is its own failed result."""
    return run_each(
        lambda d: apply_config(d, creds[(d.site, d.role.value)], view.render(d), dry_run=dry_run),
        switches,
        step=STEP,
    )


def logged(results: Results, events: Events) -> Results:
    """Each result's detail in the run's events; the results."""
    for r in results:
        events.info(f"{r.target}: {r.detail}")
    return results


def journal_applied(nb: pynetbox.api, view: SiteView, results: Results, run: str) -> None:
    """A journal entry on every switch fabric-apply changed, with its diff: one read and one write."""
    entries = [
        (view.devices[r.target], f"fabric-apply {run}:\n" + "\n".join(f"- `{x}`" for x in r.diff))
        for r in results
        if r.changed and not r.failed
    ]
    add_journal_entries(nb, entries)


# --- fabric-apply's verification ----------------------------------------------------------------
def adjacency_problems(
    view: SiteView, switches: list[Device], before: Readings[RoutingState], now: Readings[RoutingState]
) -> list[str]:
    """No adjacency that was Full `before` the push is lost, and every link between two of the pushed
    `switches` is Full `now` (a link to a switch outside the push may be down for its own reasons)."""
    names = {d.name for d in switches}
    problems = []
    for d in switches:
        state = now.values.get(d.name)
        if state is None:
            problems.append(not_read(now, d.name, "routing state"))
            continue
        was = before.values.get(d.name)
        kept = set(was.full_neighbours_on) if was is not None else set()
        # a border to another site's switch not pushed with it may change protocol (OSPF to eBGP)
        # with this push: it comes up when the other side is pushed, as its site's change says
        kept -= {link.interface for link in switch_intent(view.site, d, view.devices).border_links}
        wanted = sorted(kept | {p for p, peer in view.peers(d.name) if peer.name in names})
        problems += routing_problems(d, state, wanted, [], design_of(view.site))
    return problems


def verify_adjacencies(
    view: SiteView,
    switches: list[Device],
    creds: Creds,
    before: Readings[RoutingState],
    timeout: float = VERIFY_TIMEOUT_S,
) -> list[str]:
    """`adjacency_problems`, read again until there are none or `timeout` has passed: what is left."""
    return poll_until(
        lambda: adjacency_problems(view, switches, before, read_states(view, creds, switches)),
        lambda problems: not problems,
        timeout,
    )


# --- cost-out / cost-in (pure) ------------------------------------------------------------------
def is_costed_out(view: SiteView, device: Device) -> bool:
    """In routing maintenance, as NetBox records it for the site's routing design."""
    return design_of(view.site).is_costed_out(device)


def with_cost_out(view: SiteView, name: str, cost_out: bool) -> SiteView:
    """The view as it will be once NetBox records the switch's new maintenance state."""
    site, devices = design_of(view.site).with_cost_out(view.site, view.devices, name, cost_out)
    return SiteView(site=site, devices=devices)


def last_path_problems(
    view: SiteView,
    costing_out: set[str],
    states: Readings[RoutingState],
    leaving: frozenset[str] = frozenset(),
) -> list[str]:
    """Every active device of the site that would keep no working path upstream. A path works when
    its switch is not costed out (NetBox), answers, and, between switches, the link's adjacency is
    Full as the device itself sees it. Devices `leaving` (an evacuation's own scope) are meant to."""
    down = costing_out | {d.name for d in view.active_switches if is_costed_out(view, d)}
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
            if up.name in down or up.name in states.errors:
                return False
            mine = states.values.get(device.name)
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
            if peer.name in seen or peer.name == avoid or (not past_costed_out and is_costed_out(view, peer)):
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


def adjacent_neighbours(view: SiteView, target: str, states: Readings[RoutingState]) -> list[Device]:
    """The switch neighbours whose adjacency to `target` is Full now: the ones that carry its traffic
    and whose routing tables show a cost-out or cost-in (a cost-out keeps adjacencies up)."""
    found = []
    for n in switch_neighbours(view, target):
        state = states.values.get(n.name)
        if state is not None and set(view.ports_towards(n.name, target)) <= state.full_neighbours_on:
            found.append(n)
    return found


def traffic_problems(
    view: SiteView,
    target: str,
    neighbours: list[Device],
    states: Readings[RoutingState],
    costed_out: bool,
) -> list[str]:
    """From each neighbour's routing table: after a cost-out no route that has another way leaves
    towards `target`; after a cost-in each neighbour sends some traffic through it again."""
    problems = []
    for n in neighbours:
        state = states.values.get(n.name)
        if state is None:
            problems.append(not_read(states, n.name, "routing table"))
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


@dataclass(frozen=True)
class CostChange:
    """One switch's cost-out or cost-in, decided on a site view and one reading of the switches'
    routing state: the neighbours whose tables verify it, what a force let through, and the view as
    it is once NetBox records the change (the view the next switch in a row is decided on)."""

    switch: Device
    cost_out: bool
    reason: str
    neighbours: tuple[Device, ...]
    forced: tuple[str, ...]  # last-path problems overridden by force
    intended: SiteView
    design: RoutingDesign

    @property
    def verb(self) -> str:
        return "cost-out" if self.cost_out else "cost-in"

    @property
    def recorded(self) -> bool:
        """NetBox already records it: a re-run, or a run stopped after recording it."""
        return self.design.is_costed_out(self.switch) == self.cost_out


def plan_costs(
    view: SiteView,
    states: Readings[RoutingState],
    switches: list[str],
    reason: str,
    cost_out: bool,
    force: bool = False,
    leaving: frozenset[str] = frozenset(),
) -> list[CostChange]:
    """The cost change of each switch, in order, each decided on the view the ones before it leave.
    Refused (SelectionError) for an unsafe reason, a switch that is not an active switch of the
    site or one whose configuration cannot be rendered (`config_problems`); CostOutRefused, before
    anything changed, when a cost-out would leave a device without a working path (unless
    `force`). `leaving`: devices an evacuation takes out with the switches, so their lost paths are
    intended."""
    problem = text_problem("reason", reason)
    if problem:
        raise SelectionError([problem])
    chosen = select_switches(view, None, switches) if switches else []
    problems = config_problems(view, chosen)  # a platform or routing design Atlas does not know, ...
    if problems:
        raise SelectionError(problems)
    changes = []
    for device in chosen:
        cut = last_path_problems(view, {device.name}, states, leaving) if cost_out else []
        if cut and not force:
            raise CostOutRefused(
                f"cost-out of {device.name} refused, nothing changed (force=true overrides):\n"
                + "\n".join(f"  - {p}" for p in cut)
            )
        neighbours = tuple(adjacent_neighbours(view, device.name, states))
        intended = with_cost_out(view, device.name, cost_out)
        changes.append(
            CostChange(device, cost_out, reason, neighbours, tuple(cut), intended, design_of(view.site))
        )
        view = intended
    return changes


# --- cost-out / cost-in ---------------------------------------------------------------------------
def verify_traffic(
    view: SiteView,
    target: str,
    neighbours: Iterable[Device],
    creds: Creds,
    cost_out: bool,
    timeout: float = VERIFY_TIMEOUT_S,
) -> list[str]:
    """`traffic_problems` read again until there are none or `timeout` has passed (OSPF needs a
    moment to flood the new LSA and rerun SPF): what is left."""
    todo = list(neighbours)
    return poll_until(
        lambda: traffic_problems(view, target, todo, read_states(view, creds, todo), costed_out=cost_out),
        lambda problems: not problems,
        timeout,
    )


def change_cost(
    nb: pynetbox.api, change: CostChange, creds: Creds, dry_run: bool, run: str, events: Events
) -> Result:
    """NetBox records the change (it is intent), the switch gets its difference, the neighbours'
    tables verify it, the switch's journal says so. Already recorded and in place: only verified.
    FabricFailed when the push fails or traffic disagrees (NetBox keeps the record: a re-run
    converges)."""
    name, verb = change.switch.name, change.verb
    device = change.intended.devices[name]
    events.info(
        "verifying from "
        + (", ".join(n.name for n in change.neighbours) or "no neighbour with a Full adjacency")
    )
    for p in change.forced:
        events.warning(f"forced despite: {p}")
    [preview] = logged(apply_intent(change.intended, [device], creds, True), events)
    if dry_run:
        return preview
    if change.recorded and not preview.changed:
        problems = verify_traffic(change.intended, name, change.neighbours, creds, change.cost_out)
        if problems:
            raise FabricFailed(f"{name} is recorded as {verb} but traffic disagrees: " + "; ".join(problems))
        return preview.model_copy(update={"detail": f"already {verb}; traffic verified"})
    recorded = set_custom_fields(nb, name, {change.design.cost_out_field: change.cost_out})
    [pushed] = logged(apply_intent(change.intended, [device], creds, False), events)
    if pushed.failed:
        raise FabricFailed(f"{name}: {pushed.detail} (NetBox records {verb}; a re-run converges)")
    problems = verify_traffic(change.intended, name, change.neighbours, creds, change.cost_out)
    forced = f" (forced past the last-path guard: {'; '.join(change.forced)})" if change.forced else ""
    add_journal_entry(
        nb,
        name,
        f"fabric-{verb} {run}{forced}: {change.reason}\n"
        + (
            "- traffic verified from the neighbours"
            if not problems
            else "- NOT verified: " + "; ".join(problems)
        ),
        kind="info" if not problems else "warning",
    )
    if problems:
        raise FabricFailed(f"{verb} of {name} pushed, but traffic disagrees: " + "; ".join(problems))
    return pushed.model_copy(
        update={
            "changed": pushed.changed or recorded.changed,
            "detail": f"{verb}: {pushed.detail}; traffic verified",
        }
    )


def change_costs(
    nb: pynetbox.api, changes: list[CostChange], creds: Creds, run: str, events: Events
) -> Results:
    """Several switches' changes, one after the other (each was decided on the view the ones before
    it leave); the first that fails stops the rest."""
    return Results(change_cost(nb, c, creds, False, run, events) for c in changes)
