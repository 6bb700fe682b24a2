"""Rack bring-up: a planned rack in NetBox becomes a working, active rack.

Each step reads the current state and changes only the difference; the flow (flows/rack_bringup.py)
calls them in order and decides. Preflight is pure and runs before anything is touched; every step
after it works on Targets (address and credential resolved), reads many devices with `read_each`,
changes them with `run_each` and waits with `poll_until` (atlas.core.run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network

import pynetbox
from pydantic import BaseModel, Field

from atlas.core.errors import Failed, Refused
from atlas.core.model import (
    Cable,
    Change,
    Credential,
    Device,
    DeviceStatus,
    InterfaceKind,
    RackStatus,
    Role,
    Site,
)
from atlas.core.run import (
    Events,
    Readings,
    Result,
    Results,
    Target,
    TargetMap,
    Targets,
    poll_until,
    read_each,
    run_each,
    targets,
)
from atlas.core.safety import name_problem, text_problem
from atlas.hosts import baseline
from atlas.hosts.facts import baseline_drift, facts_command
from atlas.hosts.services import service_problems
from atlas.net.intent import RoutingState
from atlas.net.lldp import Neighbours, check_cabling
from atlas.net.platforms import platform_problem
from atlas.net.render import intent_problems, plan_problems, render, switch_intent
from atlas.net.routing import design_of, design_problem
from atlas.net.sessions import DeviceUnreachable, lldp_neighbours, ssh_exec
from atlas.net.switch import STEP, apply_config
from atlas.net.verify import read_routing, read_switch_state, routing_problems
from atlas.runbooks.provision import bmc_problems
from atlas.runbooks.site import read_view
from atlas.secrets import Vault
from atlas.sot.address_plan import address_problems, link_problems
from atlas.sot.read import NotInNetBox
from atlas.sot.write import add_journal_entries, set_rack_status, set_statuses


class PreflightError(Refused):
    headline = "preflight found {n} problem(s); no device was touched"


class BringupFailed(Failed):
    pass


def stop_on_failures(results: Results, headline: str) -> None:
    """Ends the run now when a step failed for some device, naming each and why."""
    if results.failed:
        raise BringupFailed(f"{headline}:\n" + "\n".join(f"{r.target}: {r.error}" for r in results.failed))


class RackScope:
    """A rack and the site it is in, as NetBox has them, read once at the start of the run.

    A plain class on purpose, not a dataclass or a model: Prefect walks a task's dataclass and model
    arguments looking for futures, and a scope holds the whole site's models (thousands of objects in
    a full site) and goes to every task of the run."""

    __slots__ = ("devices", "rack", "site")

    def __init__(self, site: Site, rack: str, devices: dict[str, Device]) -> None:
        self.site = site
        self.rack = rack
        self.devices = devices  # the site's devices and the far ends of its cables in other sites

    @property
    def members(self) -> tuple[Device, ...]:
        return self.site.devices_in(self.rack)

    @property
    def leaves(self) -> tuple[Device, ...]:
        return tuple(d for d in self.members if d.role == Role.LEAF)

    @property
    def servers(self) -> tuple[Device, ...]:
        return tuple(d for d in self.members if d.role.is_server)

    @property
    def spines(self) -> tuple[Device, ...]:
        names = {p.device for d in self.leaves for c in self.site.cables_of(d.name) for p in c.ends()}
        return tuple(d for d in self.site.devices if d.name in names and d.role == Role.SPINE)

    @property
    def switches(self) -> tuple[Device, ...]:
        return (*self.leaves, *self.spines)

    @property
    def touched(self) -> tuple[Device, ...]:
        return (*self.switches, *self.servers)


def read_scope(nb: pynetbox.api, site: str, rack: str) -> RackScope:
    view = read_view(nb, site)
    if not any(r.name == rack for r in view.site.racks):
        raise NotInNetBox(f"rack {rack!r} is not in site {site!r} in NetBox")
    return RackScope(site=view.site, rack=rack, devices=view.devices)


# --- preflight (pure) ---------------------------------------------------------------------------
def preflight(scope: RackScope) -> list[str]:
    problems: list[str] = []
    if not scope.members:
        return [f"rack {scope.rack} has no devices in NetBox"]
    if not scope.leaves:
        problems.append(f"rack {scope.rack} has no leaf switch")
    cabled = {e for c in scope.site.cables for e in c.ends()}
    owners: dict[str, list[str]] = {}
    for d in scope.site.devices:
        for i in d.interfaces:
            for a in i.addresses:
                owners.setdefault(str(a.ip), []).append(f"{d.name}:{i.name}")
    for d in scope.touched:
        _add(problems, name_problem("device", d.name))
        if not d.platform:
            problems.append(f"{d.name}: no platform in NetBox")
        if d.mgmt_address is None:
            problems.append(f"{d.name}: no management address in NetBox")
        if d.loopback is None:
            problems.append(f"{d.name}: no loopback address in NetBox")
        for i in d.interfaces:
            _add(problems, name_problem(f"{d.name} interface", i.name))
            if i.description:
                _add(problems, text_problem(f"{d.name}:{i.name} description", i.description))
            if i.kind != InterfaceKind.PHYSICAL:
                continue
            end_is_cabled = any(e.device == d.name and e.interface == i.name for e in cabled)
            if d.role.is_server and not end_is_cabled:
                problems.append(f"{d.name}:{i.name}: server NIC is not cabled in NetBox")
            if end_is_cabled and not i.addresses and d in scope.switches:
                problems.append(f"{d.name}:{i.name}: cabled but has no address in NetBox")
            if d.role.is_server and not i.addresses:
                problems.append(f"{d.name}:{i.name}: no address in NetBox")
    touched = {d.name for d in scope.touched}
    problems += address_problems(scope.touched, scope.site.prefixes)
    problems += link_problems(
        [c for c in scope.site.cables if {c.a.device, c.b.device} & touched], scope.devices, scope.site.name
    )
    for leaf in scope.leaves:
        uplinks = [c for c in scope.site.cables_of(leaf.name) if _peer_role(scope, leaf, c) == Role.SPINE]
        if not uplinks:
            problems.append(f"{leaf.name}: no uplink to a spine is cabled in NetBox")
    touched = {d.name for d in scope.touched}
    for ip, where in sorted(owners.items()):
        if len(where) > 1 and touched & {w.split(":")[0] for w in where}:
            problems.append(f"address {ip} is assigned more than once: {', '.join(where)}")
    _add(problems, design_problem(scope.site))  # routing design and switch platforms Atlas knows
    problems += service_problems(scope.touched)  # and the servers' service managers
    problems += bmc_problems(scope.servers)  # and where their BMCs are
    for d in scope.switches:
        _add(problems, platform_problem(d))
        problems += intent_problems(switch_intent(scope.site, d, scope.devices))
    problems += plan_problems(scope.site, scope.touched, scope.devices)  # eBGP: the ASNs
    return sorted(dict.fromkeys(problems))


def _add(problems: list[str], problem: str | None) -> None:
    if problem:
        problems.append(problem)


def _peer_role(scope: RackScope, device: Device, cable: Cable) -> Role | None:
    other = scope.devices.get(cable.ends_from(device.name)[1].device)
    return other.role if other else None


# --- targets and reachability -------------------------------------------------------------------
def rack_targets(scope: RackScope, vault: Vault) -> TargetMap:
    """Every device the run touches as a Target, in the scope's order; credentials read from Vault
    once per role, their values never leave memory."""
    creds = {
        role: vault.credential(scope.site.name, role)
        for role in sorted({d.role.value for d in scope.touched})
    }
    return TargetMap(targets(scope.touched, lambda d: creds.get(d.role.value)))


def targets_of(found: Targets, devices: Iterable[Device]) -> list[Target]:
    """The targets of `devices`, in their order."""
    return [found[d.name] for d in devices]


# --- device state, read once ---------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceState:
    """A device as the run finds it, read once over its one SSH connection: later steps decide on
    it instead of asking the device again (pyinfra's facts)."""

    neighbours: Neighbours  # what LLDP sees; spines are not checked and have none here
    running_config: str | None = None  # switches
    routing: RoutingState | None = None  # switches
    host_facts: str | None = None  # servers: facts_command's output


def read_state(scope: RackScope, found: Targets) -> Readings[DeviceState]:
    """Every touched device's state, or why it could not be read."""
    design = design_of(scope.site)

    def one(t: Target) -> DeviceState:
        d = t.device
        neighbours = lldp_neighbours(d, t.credential) if d.role != Role.SPINE else {}
        if d.role.is_server:
            facts = ssh_exec(d, t.credential, facts_command(design))
            return DeviceState(neighbours=neighbours, host_facts=facts)
        running, routing = read_switch_state(d, t.credential, design)
        return DeviceState(neighbours=neighbours, running_config=running, routing=routing)

    return read_each(one, targets_of(found, scope.touched))


def known_then[V](known: V | None, read: Callable[[], V]) -> Callable[[], V]:
    """A read for `poll_until` that answers `known` the first time (what the run read already), if
    there is one, and reads from then on."""
    first = [known] if known is not None else []

    def answer() -> V:
        return first.pop() if first else read()

    return answer


# --- cabling ------------------------------------------------------------------------------------
def check_rack_cabling(
    scope: RackScope, found: Targets, states: Mapping[str, DeviceState], wait: float = 12.0
) -> list[str]:
    """LLDP of the rack's leaves and servers against NetBox. LLDP advertises every 5 s, so a port
    that shows nothing yet is asked again for a little while before it counts as missing."""
    checked = targets_of(found, (*scope.leaves, *scope.servers))
    cables = [c for t in checked for c in scope.site.cables_of(t.name)]
    at_start = Readings(values={t.name: states[t.name].neighbours for t in checked}, errors={})
    read = known_then(at_start, lambda: read_each(lambda t: lldp_neighbours(t.device, t.credential), checked))

    def done(seen: Readings[Neighbours]) -> bool:
        problems = check_cabling(cables, seen.values)
        return bool(seen.errors) or not problems or any(p.kind != "missing" for p in problems)

    seen = poll_until(read, done, timeout=wait, pause=2.0)
    return seen.problems or [str(p) for p in check_cabling(cables, seen.values)]


# --- switches -----------------------------------------------------------------------------------
def configure_switches(
    scope: RackScope, found: Targets, states: Mapping[str, DeviceState], dry_run: bool
) -> Results:
    """Each switch brought to the configuration rendered from NetBox against the running one it
    was read with; only the difference is pushed (a dry run reports it)."""

    def one(t: Target) -> Result:
        intended = render(switch_intent(scope.site, t.device, scope.devices))
        running = states[t.name].running_config
        return apply_config(t.device, t.credential, intended, dry_run=dry_run, running=running)

    return run_each(one, targets_of(found, scope.switches), step=STEP)


def expected_routes(scope: RackScope) -> list[IPv4Network]:
    """Loopbacks every leaf must route to: the site's active devices and this rack's."""
    return sorted(
        {
            d.loopback.network
            for d in scope.site.devices
            if d.loopback is not None
            and (d.status == DeviceStatus.ACTIVE or d.rack == scope.rack)
            and (d.role.is_switch or d.role.is_server)
        },
        key=lambda n: int(n.network_address),
    )


def fabric_ports(scope: RackScope, device: Device) -> list[str]:
    """The device's ports on the rack's fabric links: to or from one of its leaves."""
    ports = []
    for c in scope.site.cables_of(device.name):
        mine, far = c.ends_from(device.name)
        other = scope.devices.get(far.device)
        if other is not None and other.role.is_switch and (other in scope.leaves or device in scope.leaves):
            ports.append(mine.interface)
    return ports


def routing_state_problems(scope: RackScope, routing: Readings[RoutingState]) -> list[str]:
    """Why the rack does not route yet: switches whose routing could not be read, fabric links not
    Full, loopbacks missing from a leaf's table."""
    loopbacks, design = expected_routes(scope), design_of(scope.site)
    problems = list(routing.problems)
    for d in scope.switches:
        if d.name in routing.values:
            wanted = loopbacks if d in scope.leaves else []
            problems += routing_problems(d, routing.values[d.name], fabric_ports(scope, d), wanted, design)
    return problems


def verify_routing(
    scope: RackScope,
    found: Targets,
    states: Mapping[str, DeviceState],
    switches_changed: bool,
    timeout: float = 60.0,
) -> list[str]:
    """Every fabric link of the rack Full, every expected loopback in every leaf's table. A run that
    changed no switch checks the routing it read at its start first; OSPF converging after a change
    is read again each second until the timeout."""
    switches, design = targets_of(found, scope.switches), design_of(scope.site)
    at_start = {t.name: r for t in switches if (r := states[t.name].routing) is not None}
    fresh = not switches_changed and len(at_start) == len(switches)
    read = known_then(
        Readings(values=at_start, errors={}) if fresh else None,
        lambda: read_each(lambda t: read_routing(t.device, t.credential, design), switches),
    )

    def done(routing: Readings[RoutingState]) -> bool:
        return bool(routing.errors) or not routing_state_problems(scope, routing)

    return routing_state_problems(scope, poll_until(read, done, timeout=timeout, pause=1.0))


# --- hosts --------------------------------------------------------------------------------------
def configure_hosts(
    scope: RackScope,
    found: Targets,
    states: Mapping[str, DeviceState],
    dry_run: bool,
    events: Events,
    switches_changed: bool,
) -> Results:
    """The host baseline on the rack's servers that differ from it; the others as they are. A
    host's OSPF adjacencies follow its leaves: after the run changed a switch, hosts are read again."""
    hosts, design = (
        baseline.inventory(scope.site, scope.devices, [found[d.name] for d in scope.servers]),
        design_of(scope.site),
    )

    def cred_of(d: Device) -> Credential:
        return found[d.name].credential

    drift = (
        baseline.read_drift(hosts, scope.devices, cred_of, design=design)
        if switches_changed
        else Readings(
            values={
                h.name: baseline_drift(h.variables, states[h.name].host_facts or "", design) for h in hosts
            },
            errors={},
        )
    )
    return baseline.converge(hosts, scope.devices, cred_of, drift, dry_run, events.info, design)


def verify_server_paths(scope: RackScope, found: Targets) -> Results:
    """A server of this rack reaches a server of another rack of the site over the fabric."""
    others = [
        (d, d.loopback)
        for d in scope.site.devices
        if d.role.is_server
        and d.rack not in (None, scope.rack)
        and d.status == DeviceStatus.ACTIVE
        and d.loopback is not None
    ]
    if not scope.servers or not others:
        return Results()
    source, (far, loopback) = found[scope.servers[0].name], others[0]
    try:
        # the first echo answered proves the path; a lost first packet (ARP) only costs 0.2 s more
        ssh_exec(source.device, source.credential, f"ping -c 1 -i 0.2 -w 3 {loopback.ip}", timeout=20)
    except DeviceUnreachable as e:
        why = f"{source.name} cannot reach {far.name} ({loopback.ip}) over the fabric: {e}"
        return Results([Result.failure(scope.rack, "server path", why)])
    return Results()


# --- NetBox -------------------------------------------------------------------------------------
def journal_text(device: str, results: Results, activated_from: str | None, run: str) -> str | None:
    """The device's journal entry for this run: what each step changed, and its status change;
    None when the run changed nothing on it."""
    lines = [
        f"- {r.step}: {r.detail}" + "".join(f"\n  - `{x}`" for x in r.diff)
        for r in results.of(device)
        if r.changed
    ]
    if activated_from is not None:
        lines.append(f"- status: {activated_from} → active")
    return f"rack-bringup {run}:\n" + "\n".join(lines) if lines else None


def record_in_netbox(nb: pynetbox.api, scope: RackScope, results: Results, run: str) -> list[Change]:
    """A few calls whatever the rack's size: statuses in one update, journal entries in one read and
    one write, the rack last (it is active only once every device is)."""
    # the scope was read at the start of this run: an already active device costs no API call
    statuses = set_statuses(nb, list(scope.members), DeviceStatus.ACTIVE)
    activated = {c.target: str(c.before) for c in statuses}
    entries = [
        (d, text)
        for d in scope.touched
        if (text := journal_text(d.name, results, activated.get(d.name), run))
    ]
    changes = statuses + [c for c in add_journal_entries(nb, entries) if c.changed]
    for rack in scope.site.racks:
        if rack.name == scope.rack:
            changes += [c for c in [set_rack_status(nb, rack, RackStatus.ACTIVE)] if c.changed]
    return changes


# --- the report -----------------------------------------------------------------------------------
class BringupReport(BaseModel):
    site: str
    rack: str
    dry_run: bool
    changed: int = Field(description="devices changed (or that would change, in a dry run)")
    failed: int
    rows: list[dict[str, str]]
    netbox_changes: list[str] = []


def report_rows(scope: RackScope, results: Results) -> list[dict[str, str]]:
    """One row per device the run touched: its role, result, number of changes and details."""
    return results.rows([d.name for d in scope.touched], role=lambda name: scope.devices[name].role.value)


def report(scope: RackScope, dry_run: bool, results: Results, netbox: list[str]) -> BringupReport:
    return BringupReport(
        site=scope.site.name,
        rack=scope.rack,
        dry_run=dry_run,
        changed=len(results.changed_targets),
        failed=len(results.failed),
        rows=report_rows(scope, results),
        netbox_changes=netbox,
    )


def failure(scope: RackScope, results: Results) -> str:
    """Why the run failed: every failed step, and the state the rack stays in."""
    return (
        f"{len(results.failed)} step(s) failed; rack {scope.rack} stays {scope.members[0].status.value}: "
        + "; ".join(f"{r.target}: {r.detail}" for r in results.failed)
    )


def artifact(report: BringupReport) -> tuple[str, str, list[str], list[dict[str, str]]]:
    """The report as the run's artifact (atlas.prefect.reports.publish): key, title, summary, rows."""
    verb = "would change" if report.dry_run else "changed"
    return (
        f"rack-bringup-{report.site}-{report.rack}",
        f"Rack bring-up {report.site}/{report.rack}{' (dry run)' if report.dry_run else ''}",
        [f"devices {verb}: **{report.changed}**", f"failed: **{report.failed}**"]
        + [f"NetBox: {c}" for c in report.netbox_changes],
        report.rows,
    )
