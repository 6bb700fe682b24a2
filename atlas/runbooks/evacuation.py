"""Evacuating a rack or a site, and restoring it: what is in scope, what moves, and whether what
remains can carry it; and the decisions of its steps. Pure: NetBox models and live answers in, a plan
or a verdict out (the steps themselves are in atlas.runbooks.evacuation_steps).

What an evacuation did is recorded on each device it changed (custom field `evacuation`), so a re-run
knows what is already done, a restore undoes exactly that, and nothing else (a switch costed out for
other maintenance stays costed out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from atlas.core.errors import Refused
from atlas.core.model import Device, DeviceStatus, RackStatus, Role, Site
from atlas.runbooks.traffic import Answers
from atlas.sot.schema import EVACUATION_FIELD


class EvacuationRefused(Refused):
    headline = "{n} problem(s); nothing was changed"


def evacuated_by(device: Device) -> str | None:
    value = device.custom_fields.get(EVACUATION_FIELD)
    return str(value) if value else None


@dataclass(frozen=True)
class Scope:
    site: str
    rack: str | None = None

    def __str__(self) -> str:
        return f"rack {self.rack}" if self.rack else f"site {self.site}"

    def holds(self, device: Device) -> bool:
        return device.site == self.site and (self.rack is None or device.rack == self.rack)


@dataclass
class EvacuationPlan:
    scope: Scope
    servers: list[str] = field(default_factory=list)  # drained and recorded offline
    announcing: list[str] = field(default_factory=list)  # of those, the ones serving the anycast service
    service_addresses: list[str] = field(default_factory=list)
    switches: list[str] = field(default_factory=list)  # costed out
    ceph_buckets: list[str] = field(default_factory=list)  # CRUSH buckets that get noout
    remaining: list[str] = field(default_factory=list)  # servers outside the scope that keep serving
    already: list[str] = field(default_factory=list)  # devices this scope's evacuation already changed
    problems: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return sorted({*self.servers, *self.switches})

    @property
    def to_do(self) -> list[str]:
        return [d for d in self.devices if d not in self.already]


def scope_problems(sites: dict[str, Site], scope: Scope) -> list[str]:
    site = sites.get(scope.site)
    if site is None:
        return [f"site {scope.site!r} is not in NetBox"]
    if scope.rack is not None and scope.rack not in {r.name for r in site.racks}:
        return [f"rack {scope.rack!r} is not in site {scope.site}"]
    return []


def _in_service(d: Device, racks_active: set[str]) -> bool:
    return d.status == DeviceStatus.ACTIVE and (d.rack is None or d.rack in racks_active)


def plan_evacuation(
    sites: dict[str, Site], scope: Scope, answering: Iterable[str] | None = None, headroom: float = 1.0
) -> EvacuationPlan:
    """`answering`: the servers a client just reached at the service address (None: not probed).
    `headroom`: how much more load each remaining server can take (1.0: twice its own); the servers
    that remain must absorb what the scope's servers carried."""
    plan = EvacuationPlan(scope=scope, problems=scope_problems(sites, scope))
    if plan.problems:
        return plan
    site = sites[scope.site]
    racks_active = {r.name for s in sites.values() for r in s.racks if r.status == RackStatus.ACTIVE}
    members = [d for d in site.devices if scope.holds(d)]
    ours = [d for d in members if evacuated_by(d)]
    live = [d for d in members if _in_service(d, racks_active) and not evacuated_by(d)]
    plan.already = sorted(d.name for d in ours)
    plan.servers = sorted(d.name for d in [*live, *ours] if d.role.is_server)
    switch_roles = (Role.LEAF,) if scope.rack else (Role.LEAF, Role.SPINE)
    plan.switches = sorted(d.name for d in [*live, *ours] if d.role in switch_roles)
    plan.announcing = sorted(d.name for d in [*live, *ours] if d.role.is_server and d.anycast)
    plan.service_addresses = sorted({str(a.ip) for d in members for a in d.anycast})
    if any(d.role == Role.STORAGE for d in [*live, *ours]):
        plan.ceph_buckets = [scope.rack or scope.site]

    others = [d for s in sites.values() for d in s.devices if not scope.holds(d)]
    elsewhere = sorted({d.site for d in others if evacuated_by(d) and d.site != scope.site})
    if elsewhere:
        plan.problems.append(
            f"site {', '.join(elsewhere)} is evacuated: restore it first (never more than one site at a time)"
        )
    serving = {d.name for d in others if d.anycast and _in_service(d, racks_active) and not evacuated_by(d)}
    if answering is not None:
        serving &= set(answering)
    plan.remaining = sorted(serving)
    leaving = [n for n in plan.announcing if n not in plan.already]
    if leaving and len(plan.remaining) * headroom < len(leaving):
        plan.problems.append(
            f"what remains could not carry the load: {len(plan.remaining)} server(s) outside the {scope} "
            f"serve the service{' and answer now' if answering is not None else ''}, the {scope} takes "
            f"{len(leaving)} out (headroom {headroom:g})"
        )
    return plan


@dataclass
class RestorePlan:
    scope: Scope
    servers: list[str] = field(default_factory=list)
    announcing: list[str] = field(default_factory=list)
    switches: list[str] = field(default_factory=list)
    ceph_buckets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return sorted({*self.servers, *self.switches})


def plan_restore(sites: dict[str, Site], scope: Scope) -> RestorePlan:
    """Exactly what an evacuation of this scope recorded, nothing else."""
    plan = RestorePlan(scope=scope, problems=scope_problems(sites, scope))
    if plan.problems:
        return plan
    ours = [d for d in sites[scope.site].devices if scope.holds(d) and evacuated_by(d)]
    plan.servers = sorted(d.name for d in ours if d.role.is_server)
    plan.announcing = sorted(d.name for d in ours if d.role.is_server and d.anycast)
    plan.switches = sorted(d.name for d in ours if d.role.is_switch)
    if any(d.role == Role.STORAGE for d in ours):
        plan.ceph_buckets = [scope.rack or scope.site]
    return plan


def plan_markdown(plan: EvacuationPlan, reason: str, ticket: str) -> str:
    """What the approver reads in the Resume dialog: everything the run will do, in order."""
    lines = [
        f"### Evacuate {plan.scope} ({ticket})",
        f"Reason: {reason}",
        "",
        f"1. Ceph `noout` on: {', '.join(plan.ceph_buckets) or 'nothing (no storage server in scope)'}",
        f"2. Drain {len(plan.servers)} server(s): {', '.join(plan.servers) or 'none'}",
        f"3. Withdraw {', '.join(plan.service_addresses) or 'no service address'} from "
        f"{', '.join(plan.announcing) or 'no server'}; cost out {', '.join(plan.switches) or 'no switch'}",
        f"4. Verify from the client: answered only by {len(plan.remaining)} server(s) outside the scope",
        f"5. NetBox: servers offline, journal on every device and on the {'rack' if plan.scope.rack else 'site'}",
    ]
    if plan.already:
        lines += ["", f"Already done by an earlier run: {', '.join(plan.already)}"]
    return "\n".join(lines)


def why(action: str, ticket: str, reason: str) -> str:
    """The reason as the journal of every device and switch gets it."""
    return f"{action} {ticket}: {reason}"


def plan_summary(plan: EvacuationPlan) -> dict[str, list[str]]:
    """The plan as the report and the approver list it."""
    return {
        "servers": plan.servers,
        "service addresses": plan.service_addresses,
        "switches": plan.switches,
        "ceph noout": plan.ceph_buckets,
        "remaining servers": plan.remaining,
        "already done": plan.already,
    }


def noout_differs(buckets: Iterable[str], flags: Mapping[str, set[str]], on: bool) -> list[str]:
    """The buckets whose Ceph `noout` group flag is not yet as wanted (`flags`: Ceph's group flags)."""
    return [b for b in buckets if ("noout" in flags.get(b, set())) != on]


def service_problems(answers: Answers, scope_servers: Iterable[str], back: bool) -> list[str]:
    """Evacuated (`back` False): no server of the scope answers and no request fails. Restored: every
    announcing server of the scope answers again, and no request fails."""
    scope = set(scope_servers)
    problems = []
    if answers.errors:
        problems.append(f"{sum(answers.errors.values())} request(s) failed ({dict(answers.errors)})")
    inside = sorted(h for h in answers.by_host if h in scope)
    if not back and inside:
        problems.append(f"still answered by {', '.join(inside)}")
    missing = sorted(scope - set(answers.by_host))
    if back and missing:
        problems.append(f"not answered by {', '.join(missing)} yet")
    return problems
