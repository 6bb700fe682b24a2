"""The steps of an evacuation and of a restore. Each reads the state first and changes only what
differs, so a re-run resumes where a failed run stopped and a re-run on a scope already in that state
changes nothing; each puts a `Step` on the run's timeline, which the report shows.

The decisions are pure and in atlas.runbooks.evacuation; the systems a step talks to that a flow
chooses (the workload adapter, the Ceph cluster) are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from ipaddress import IPv4Address

import pynetbox
from pydantic import BaseModel

from atlas.ceph.cluster import Ceph
from atlas.core.errors import Failed
from atlas.core.model import Credential, Device, DeviceStatus, Role, Site
from atlas.core.run import Events, Result, poll_until, run_each
from atlas.core.safety import text_problem
from atlas.runbooks import fabric
from atlas.runbooks.evacuation import (
    EvacuationPlan,
    EvacuationRefused,
    RestorePlan,
    Scope,
    noout_differs,
    plan_evacuation,
    plan_restore,
    service_problems,
    why,
)
from atlas.runbooks.site import Creds, credentials, live_switches, read_view, view_from
from atlas.runbooks.traffic import Answers, ProbeFailed, probe
from atlas.secrets import Vault
from atlas.sot.schema import EVACUATION_FIELD
from atlas.sot.write import (
    add_journal_entries,
    add_object_journal_entry,
    set_devices_custom_fields,
    set_statuses,
)
from atlas.workloads import Workloads

VERIFY_TIMEOUT_S = 60.0  # routing moves the service within seconds of a withdrawal or a cost change
STEPS = 6  # either way: NetBox, Ceph, drain, switches, the service verified, NetBox


class StepFailed(Failed):
    pass


class Step(BaseModel):
    """One step on the run's timeline: when it ended, what it changed, how that was verified."""

    at: str
    step: str
    changed: list[str]
    verified: str


class EvacuationReport(BaseModel):
    scope: str
    action: str
    dry_run: bool
    plan: dict[str, list[str]]
    timeline: list[Step] = []
    approval: str | None = None

    @property
    def changed(self) -> list[str]:
        return sorted({c for s in self.timeline for c in s.changed})

    @property
    def title(self) -> str:
        return f"{self.action} {self.scope}" + (" (dry run: plan)" if self.dry_run else "")

    def summary(self) -> list[str]:
        """The report's lines: the plan, the approval, and whether anything changed."""
        return (
            [f"{what}: {', '.join(items) or 'none'}" for what, items in self.plan.items()]
            + ([self.approval] if self.approval else [])
            + ([] if self.dry_run or self.changed else ["no change: the scope was already in that state"])
        )

    def rows(self) -> list[dict[str, str]]:
        """The timeline as the report's table."""
        return [
            {"at": s.at, "step": s.step, "changed": ", ".join(s.changed) or "-", "verified": s.verified}
            for s in self.timeline
        ]


class Run:
    """What every step of one evacuation or restore needs: NetBox and Vault, every site as the run
    read them, the report whose timeline the steps fill, and where the run says what it does.
    `name` is the run's, as journal entries give it."""

    def __init__(
        self,
        nb: pynetbox.api,
        vault: Vault,
        sites: dict[str, Site],
        scope: Scope,
        action: str,
        dry_run: bool,
        events: Events,
        name: str,
    ) -> None:
        self.nb, self.vault, self.sites, self.scope = nb, vault, sites, scope
        self.events, self.name = events, name
        self.report = EvacuationReport(scope=str(scope), action=action, dry_run=dry_run, plan={})
        self.devices = {d.name: d for s in sites.values() for d in s.devices}
        self._switch_creds: Creds = {}

    @cached_property
    def creds(self) -> Creds:
        """Of the servers and the client, read once when first needed; switches' are read by the
        switch step, with the site it reads."""
        return credentials(self.vault, [d for d in self.devices.values() if not d.role.is_switch])

    def switch_creds(self, switches: list[Device]) -> Creds:
        """Of `switches`, each (site, role) read from Vault once per run: the plan and the switch
        step ask for the same ones."""
        missing = [d for d in switches if (d.site, d.role.value) not in self._switch_creds]
        self._switch_creds |= credentials(self.vault, missing)
        return self._switch_creds

    def cred(self, device: Device) -> Credential:
        return self.creds[(device.site, device.role.value)]

    def step(self, name: str, changed: list[str], verified: str) -> None:
        at = datetime.now(UTC).strftime("%H:%M:%S")
        self.report.timeline.append(Step(at=at, step=name, changed=changed, verified=verified))
        self.events.step_done(name)
        self.events.info(f"{name}: changed {', '.join(changed) or 'nothing'}; verified: {verified}")

    def journal(self, comments: str, kind: str = "info") -> None:
        """An entry in the journal of the scope: its rack, or its site."""
        if self.scope.rack:
            add_object_journal_entry(self.nb, "dcim.rack", self.scope.rack, comments, kind)
        else:
            add_object_journal_entry(self.nb, "dcim.site", self.scope.site, comments, kind)

    def client(self) -> Device | None:
        return next(
            (d for d in self.devices.values() if d.role == Role.CLIENT and d.status == DeviceStatus.ACTIVE),
            None,
        )

    def probe(self, addresses: list[str], count: int = 30) -> Answers | None:
        """Who answers the service addresses, seen from the client; None without a client or an
        address."""
        client = self.client()
        if client is None or not addresses:
            return None
        answers = Answers()
        for address in addresses:
            answers += probe(client, self.cred(client), IPv4Address(address), count=count)
        return answers


# --- plans ---------------------------------------------------------------------------------------
def plan(run: Run, reason: str, ticket: str, headroom: float) -> EvacuationPlan:
    """The evacuation of the run's scope, from the sites as read and from who answers the service
    now; EvacuationRefused with every problem, the fabric's last-path guard for everything outside
    the scope included (found now, not half-way through the cost-out)."""
    addresses = sorted({str(a.ip) for d in run.devices.values() for a in d.anycast})
    try:
        now = run.probe(addresses)
    except ProbeFailed as e:
        raise EvacuationRefused([f"cannot tell who serves now: {e}"]) from None
    answering = sorted(now.by_host) if now is not None else None
    the_plan = plan_evacuation(run.sites, run.scope, answering, headroom)
    # checked here, since the cost-out step would refuse it half-way through
    the_plan.problems += [p for p in [text_problem("reason", why("evacuate", ticket, reason))] if p]
    if not the_plan.problems and the_plan.switches:
        view = view_from(run.sites, run.scope.site)
        live = live_switches(view)
        states = fabric.read_states(view, run.switch_creds(live), live)
        the_plan.problems += fabric.last_path_problems(
            view, set(the_plan.switches), states, leaving=frozenset(the_plan.devices)
        )
    if the_plan.problems:
        raise EvacuationRefused(the_plan.problems)
    return the_plan


def restore_plan(run: Run, reason: str, ticket: str) -> RestorePlan:
    """Exactly what an evacuation of the run's scope recorded; EvacuationRefused with every problem."""
    back = plan_restore(run.sites, run.scope)
    back.problems += [p for p in [text_problem("reason", why("restore", ticket, reason))] if p]
    if back.problems:
        raise EvacuationRefused(back.problems)
    return back


# --- NetBox ----------------------------------------------------------------------------------------
def mark(run: Run, names: list[str], value: str | None) -> list[str]:
    """The `evacuation` custom field of each device set to `value`, in one bulk update (the devices
    as this run read them: no step before it changes the field); the devices it changed."""
    changes = set_devices_custom_fields(run.nb, [(run.devices[n], {EVACUATION_FIELD: value}) for n in names])
    return [c.target for c in changes]


def statuses(run: Run, servers: list[str], status: DeviceStatus) -> list[str]:
    """Each server's NetBox status set to `status`, in one bulk update (the servers as this run read
    them: no step before it changes a status); the servers it changed."""
    return [c.target for c in set_statuses(run.nb, [run.devices[n] for n in servers], status)]


def mark_scope(run: Run, names: list[str], ticket: str) -> None:
    run.step("NetBox: mark the scope", mark(run, names, ticket), "recorded before any change")


def clear_marks(run: Run, names: list[str]) -> None:
    run.step("NetBox: marks cleared", mark(run, names, None), "the scope is no longer evacuated")


def servers_offline(run: Run, servers: list[str], ticket: str, reason: str) -> None:
    offline = statuses(run, servers, DeviceStatus.OFFLINE)
    line = f"evacuate {ticket} {run.name}: offline ({reason})"
    add_journal_entries(run.nb, [(run.devices[n], line) for n in offline], kind="warning")
    run.step("NetBox: servers offline", offline, "statuses written")


def servers_active(run: Run, servers: list[str]) -> None:
    run.step("NetBox: servers active", statuses(run, servers, DeviceStatus.ACTIVE), "statuses written")


# --- Ceph, workloads, switches, the service --------------------------------------------------------
def ceph_noout(run: Run, cluster: Callable[[], Ceph], buckets: list[str], on: bool) -> None:
    """The `noout` group flag on (or off) for the scope's CRUSH buckets, read back. `cluster` is
    asked for the cluster only when there is a bucket."""
    name = "Ceph noout " + ("on" if on else "off")
    if not buckets:
        run.step(name, [], "no storage server in scope")
        return
    ceph = cluster()
    known = ceph.buckets()
    existing = [b for b in buckets if b in known]
    todo = noout_differs(existing, ceph.group_flags(), on)
    if todo:
        (ceph.set_group_noout if on else ceph.unset_group_noout)(todo)
    wrong = noout_differs(existing, ceph.group_flags(), on)
    if wrong:
        raise StepFailed(f"{name}: Ceph still shows {', '.join(wrong)} {'without' if on else 'with'} noout")
    absent = sorted(set(buckets) - set(existing))
    run.step(
        name,
        [f"ceph:{b}" for b in todo],
        f"group flags of {', '.join(existing) or 'no bucket'} read back"
        + (f"; {', '.join(absent)}: no OSD in CRUSH, nothing to protect" if absent else ""),
    )


def drain(run: Run, workloads: Workloads, servers: list[str], drain: bool) -> None:
    """Each server drained (or undrained) by `workloads` where it is not yet, its drain state read
    back; every server that did not follow is named."""
    name = "drain" if drain else "undrain"

    def converge(host: Device) -> Result:
        changed = workloads.drained(host) != drain
        if changed:
            (workloads.drain if drain else workloads.undrain)(host)
        if workloads.drained(host) != drain:
            return Result.failure(host.name, name, "did not follow")
        return Result(target=host.name, step=name, changed=changed)

    results = run_each(converge, [run.devices[n] for n in servers], step=name)
    results.raise_on_error(name)
    run.step(name, [r.target for r in results.changed], f"drain state of {len(servers)} server(s) read back")


def switches(run: Run, names: list[str], cost_out: bool, reason: str, leaving: frozenset[str]) -> None:
    """The switches costed out (or in) one after the other, each verified from its neighbours: the
    site and the switches' routing state are read once for all of them, and every switch's change
    is decided before the first is made."""
    changed: list[str] = []
    if names:
        view = read_view(run.nb, run.scope.site)
        live = live_switches(view)
        creds = run.switch_creds(live)
        changes = fabric.plan_costs(
            view, fabric.read_states(view, creds, live), names, reason, cost_out, leaving=leaving
        )
        changed = [
            r.target for r in fabric.change_costs(run.nb, changes, creds, run.name, run.events).changed
        ]
    run.step(
        "cost out" if cost_out else "cost in",
        changed,
        f"traffic {'avoids' if cost_out else 'uses'} each switch, read from its neighbours",
    )


def verify_service(
    run: Run, addresses: list[str], scope_servers: list[str], back: bool, timeout: float = VERIFY_TIMEOUT_S
) -> None:
    """Out: nobody in the scope answers and nothing fails. Back: every announcing server of the
    scope answers again. Read until routing shows it, bounded; StepFailed with what is left."""
    answers = poll_until(
        lambda: run.probe(addresses, count=40),
        lambda found: found is None or not service_problems(found, scope_servers, back),
        timeout,
        pause=2.0,
    )
    if answers is None:
        run.step("verify the service", [], "no client or no service address: nothing to verify")
        return
    problems = service_problems(answers, scope_servers, back)
    if problems:
        raise StepFailed("verify the service: " + "; ".join(problems))
    served = ", ".join(f"{h} {n}" for h, n in sorted(answers.by_host.items()))
    run.step("verify the service", [], f"{sum(answers.by_host.values())} requests answered: {served}")
