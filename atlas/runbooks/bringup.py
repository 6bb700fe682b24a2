"""Rack bring-up: a planned rack in NetBox becomes a working, active rack.

Each step reads the current state and changes only the difference; the flow (flows/rack_bringup.py)
calls them in order and decides. Preflight is pure and runs before anything is touched.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network

import pynetbox

from atlas.core.errors import Refused
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
from atlas.core.parallel import each_device
from atlas.core.run import Result
from atlas.core.safety import name_problem, text_problem
from atlas.hosts import baseline
from atlas.hosts.facts import FACTS_COMMAND, baseline_drift
from atlas.net.lldp import CablingProblem, Neighbours, check_cabling
from atlas.net.render import RenderError, intent_problems, render, switch_intent
from atlas.net.sessions import DeviceUnreachable, lldp_neighbours, ssh_exec
from atlas.net.switch import apply_config
from atlas.net.verify import RoutingState, read_routing, read_switch_state, routing_problems
from atlas.runbooks.site import read_view
from atlas.secrets import Vault
from atlas.sot.read import NotInNetBox
from atlas.sot.write import add_journal_entries, set_statuses

Log = Callable[[str], None]


class PreflightError(Refused):
    headline = "preflight found {n} problem(s); no device was touched"


@dataclass(frozen=True)
class RackScope:
    site: Site
    rack: str
    devices: dict[str, Device]  # the site's devices and the far ends of its cables in other sites

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
    for leaf in scope.leaves:
        uplinks = [c for c in scope.site.cables_of(leaf.name) if _peer_role(scope, leaf, c) == Role.SPINE]
        if not uplinks:
            problems.append(f"{leaf.name}: no uplink to a spine is cabled in NetBox")
    touched = {d.name for d in scope.touched}
    for ip, where in sorted(owners.items()):
        if len(where) > 1 and touched & {w.split(":")[0] for w in where}:
            problems.append(f"address {ip} is assigned more than once: {', '.join(where)}")
    for d in scope.switches:
        problems += intent_problems(switch_intent(scope.site, d, scope.devices))
    return sorted(dict.fromkeys(problems))


def _add(problems: list[str], problem: str | None) -> None:
    if problem:
        problems.append(problem)


def _peer_role(scope: RackScope, device: Device, cable: Cable) -> Role | None:
    other = scope.devices.get(cable.ends_from(device.name)[1].device)
    return other.role if other else None


# --- credentials and reachability ---------------------------------------------------------------
def credentials(scope: RackScope, vault: Vault) -> dict[str, Credential]:
    """By role, read once per run; values never leave memory."""
    return {
        role: vault.credential(scope.site.name, role)
        for role in sorted({d.role.value for d in scope.touched})
    }


def wait_reachable(devices: tuple[Device, ...], timeout: float = 30.0, port: int = 22) -> list[str]:
    deadline = time.monotonic() + timeout
    waiting = {d.name: d for d in devices if d.mgmt_address is not None}
    while waiting and time.monotonic() < deadline:
        for name, d in list(waiting.items()):
            try:
                with socket.create_connection((str(d.mgmt_address.ip), port), timeout=2):  # type: ignore[union-attr]
                    del waiting[name]
            except OSError:
                pass
        if waiting:
            time.sleep(1)
    return [
        f"{name}: SSH ({d.mgmt_address.ip}:{port}) not reachable within {timeout:.0f} s"  # type: ignore[union-attr]
        for name, d in sorted(waiting.items())
    ]


# --- device state, read once ---------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceState:
    """A device as the run finds it, read once over its one SSH connection: later steps decide on
    it instead of asking the device again (pyinfra's facts)."""

    neighbours: Neighbours  # what LLDP sees; spines are not checked and have none here
    running_config: str | None = None  # switches
    routing: RoutingState | None = None  # switches
    host_facts: str | None = None  # servers: FACTS_COMMAND's output


def read_state(scope: RackScope, creds: dict[str, Credential]) -> tuple[dict[str, DeviceState], list[str]]:
    """Every touched device's state, or why a device's could not be read."""

    def one(d: Device) -> DeviceState | DeviceUnreachable:
        cred = creds[d.role.value]
        try:
            neighbours = lldp_neighbours(d, cred) if d.role != Role.SPINE else {}
            if d.role.is_server:
                return DeviceState(neighbours=neighbours, host_facts=ssh_exec(d, cred, FACTS_COMMAND))
            running, routing = read_switch_state(d, cred)
            return DeviceState(neighbours=neighbours, running_config=running, routing=routing)
        except DeviceUnreachable as e:
            return e

    found = dict(zip((d.name for d in scope.touched), each_device(one, scope.touched), strict=True))
    states = {name: s for name, s in found.items() if isinstance(s, DeviceState)}
    return states, [str(s) for s in found.values() if isinstance(s, DeviceUnreachable)]


# --- cabling ------------------------------------------------------------------------------------
def check_rack_cabling(
    scope: RackScope, creds: dict[str, Credential], states: dict[str, DeviceState], wait: float = 12.0
) -> list[str]:
    """LLDP of the rack's leaves and servers against NetBox. LLDP advertises every 5 s, so a port
    that shows nothing yet is asked again for a little while before it counts as missing."""
    devices = (*scope.leaves, *scope.servers)
    cables = [c for d in devices for c in scope.site.cables_of(d.name)]
    seen = [states[d.name].neighbours for d in devices]
    deadline = time.monotonic() + wait
    while True:
        problems: list[CablingProblem] = check_cabling(
            cables, dict(zip((d.name for d in devices), seen, strict=True))
        )
        if not problems or any(p.kind != "missing" for p in problems) or time.monotonic() > deadline:
            return [str(p) for p in problems]
        time.sleep(2)
        try:
            seen = each_device(lambda d: lldp_neighbours(d, creds[d.role.value]), devices)
        except DeviceUnreachable as e:
            return [str(e)]


# --- switches -----------------------------------------------------------------------------------
def configure_switches(
    scope: RackScope, creds: dict[str, Credential], states: dict[str, DeviceState], dry_run: bool
) -> list[Result]:
    def one(d: Device) -> Result:
        try:
            intended = render(switch_intent(scope.site, d, scope.devices))
        except RenderError as e:
            return Result.failure(d.name, "switch-config", str(e))
        running = states[d.name].running_config
        return apply_config(d, creds[d.role.value], intended, dry_run=dry_run, running=running)

    return each_device(one, scope.switches)


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


def verify_routing(
    scope: RackScope,
    creds: dict[str, Credential],
    states: dict[str, DeviceState],
    switches_changed: bool,
    timeout: float = 60.0,
) -> list[str]:
    """Every fabric link of the rack Full, every expected loopback in every leaf's table. A run that
    changed no switch checks the routing it read at its start first; OSPF converging after a change
    is read again each second until the timeout."""
    loopbacks = expected_routes(scope)

    def fabric_ports(d: Device) -> list[str]:
        ports = []
        for c in scope.site.cables_of(d.name):
            mine, far = c.ends_from(d.name)
            other = scope.devices.get(far.device)
            if other is not None and other.role.is_switch and (other in scope.leaves or d in scope.leaves):
                ports.append(mine.interface)
        return ports

    read_at_start = [r for d in scope.switches if (r := states[d.name].routing) is not None]
    fresh = not switches_changed and len(read_at_start) == len(scope.switches)
    routing: list[RoutingState] | None = read_at_start if fresh else None
    deadline = time.monotonic() + timeout
    while True:
        if routing is None:
            try:
                routing = each_device(lambda d: read_routing(d, creds[d.role.value]), scope.switches)
            except DeviceUnreachable as e:
                return [str(e)]
        problems = []
        for d, state in zip(scope.switches, routing, strict=True):
            wanted = loopbacks if d in scope.leaves else []
            problems += routing_problems(d, state, fabric_ports(d), wanted)
        if not problems or time.monotonic() > deadline:
            return problems
        routing = None
        time.sleep(1)


# --- hosts --------------------------------------------------------------------------------------
def configure_hosts(
    scope: RackScope,
    creds: dict[str, Credential],
    states: dict[str, DeviceState],
    dry_run: bool,
    log: Log,
    switches_changed: bool,
) -> list[Result]:
    hosts = baseline.inventory(scope.site, scope.devices, scope.servers)

    def cred_of(d: Device) -> Credential:
        return creds[d.role.value]

    # a host's OSPF adjacencies follow its leaves: after the run changed a switch, hosts are read again
    drift: dict[str, list[str] | DeviceUnreachable] = (
        baseline.read_drift(hosts, scope.devices, cred_of)
        if switches_changed
        else {h.name: baseline_drift(h.variables, states[h.name].host_facts or "") for h in hosts}
    )
    return baseline.converge(hosts, scope.devices, cred_of, drift, dry_run, log)


def verify_server_paths(scope: RackScope, creds: dict[str, Credential]) -> list[str]:
    """A server of this rack reaches a server of another rack of the site over the fabric."""
    others = [
        d
        for d in scope.site.devices
        if d.role.is_server
        and d.rack not in (None, scope.rack)
        and d.status == DeviceStatus.ACTIVE
        and d.loopback is not None
    ]
    if not scope.servers or not others:
        return []
    source, target = scope.servers[0], others[0]
    assert target.loopback is not None
    try:
        # the first echo answered proves the path; a lost first packet (ARP) only costs 0.2 s more
        ping = f"ping -c 1 -i 0.2 -w 3 {target.loopback.ip}"
        ssh_exec(source, creds[source.role.value], ping, timeout=20)
    except DeviceUnreachable as e:
        return [f"{source.name} cannot reach {target.name} ({target.loopback.ip}) over the fabric: {e}"]
    return []


# --- NetBox -------------------------------------------------------------------------------------
def record_in_netbox(nb: pynetbox.api, scope: RackScope, results: list[Result], run: str) -> list[Change]:
    """A few calls whatever the rack's size: statuses in one update, journal entries in one read and
    one write, the rack last (it is active only once every device is)."""
    by_device: dict[str, list[Result]] = {}
    for r in results:
        by_device.setdefault(r.target, []).append(r)
    # the scope was read at the start of this run: an already active device costs no API call
    statuses = set_statuses(nb, list(scope.members), DeviceStatus.ACTIVE)
    activated = {c.target: c.before for c in statuses}
    entries = []
    for d in scope.touched:
        lines = [
            f"- {r.step}: {r.detail}" + "".join(f"\n  - `{x}`" for x in r.diff)
            for r in by_device.get(d.name, [])
            if r.changed
        ]
        if d.name in activated:
            lines.append(f"- status: {activated[d.name]} → active")
        if lines:
            entries.append((d, f"rack-bringup {run}:\n" + "\n".join(lines)))
    changes = statuses + [c for c in add_journal_entries(nb, entries) if c.changed]
    for rack in scope.site.racks:
        if rack.name == scope.rack and rack.status != RackStatus.ACTIVE:
            nb.dcim.racks.update([{"id": rack.netbox_id, "status": RackStatus.ACTIVE.value}])
            changes.append(
                Change(
                    target=rack.name,
                    what="rack status",
                    before=rack.status.value,
                    after="active",
                    changed=True,
                )
            )
    return changes


def report_rows(scope: RackScope, results: list[Result]) -> list[dict[str, str]]:
    rows = []
    for d in scope.touched:
        mine = [r for r in results if r.target == d.name]
        state = (
            "failed"
            if any(r.failed for r in mine)
            else "changed"
            if any(r.changed for r in mine)
            else "unchanged"
        )
        rows.append(
            {
                "device": d.name,
                "role": d.role.value,
                "result": state,
                "changes": str(sum(len(r.diff) for r in mine)),
                "detail": "; ".join(r.detail for r in mine if r.detail),
            }
        )
    return rows
