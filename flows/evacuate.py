"""evacuate / restore: the on-call runbook that empties a rack or a site, and brings it back.

evacuate: read every site from NetBox and ask the client who answers the service now -> plan (servers
to drain, service addresses that move, switches to cost out, Ceph buckets for noout, what remains;
refused when what remains could not carry the load or another site is evacuated; the dry run stops
here) -> approval (a pause whose form shows the plan; denial or timeout ends the run with nothing
changed; the answer goes into the NetBox journal of the rack or site) -> mark the devices in NetBox ->
Ceph noout -> drain -> cost out the switches -> verify from the client that only servers outside the
scope answer -> servers offline in NetBox, journal -> report with the timeline.

restore: the same steps backwards, each verified: servers active -> cost in -> undrain (announce) ->
verify that the scope's servers answer again -> Ceph noout off -> marks cleared, journal -> report.

Every step reads the state first and changes only what differs, so a re-run resumes where a failed
run stopped, and a re-run on a scope already in that state changes nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from atlas.core.errors import Failed, Refused
from atlas.core.model import Credential, Device, DeviceStatus, Role, Site
from atlas.core.parallel import each_device
from atlas.core.safety import text_problem
from atlas.prefect.approvals import Approval, NotApproved, ask
from atlas.prefect.forms import NAME_PATTERN, OPTIONAL_NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.progress import Progress
from atlas.prefect.reports import publish
from atlas.prefect.sources import cluster, run_name, sources
from atlas.runbooks import evacuation, fabric
from atlas.runbooks.evacuation import EvacuationPlan, RestorePlan, Scope
from atlas.runbooks.site import credentials, live_switches, read_view
from atlas.runbooks.traffic import Answers, ProbeFailed, probe
from atlas.secrets import Vault
from atlas.sot.read import read_site, site_names
from atlas.sot.schema import EVACUATION_FIELD
from atlas.sot.write import add_journal_entry, add_object_journal_entry, set_custom_fields, set_device_status
from atlas.workloads.lab import LabServices
from flows.fabric import change_cost

VERIFY_TIMEOUT_S = 60.0


class EvacuationRefused(Refused):
    headline = "{n} problem(s); nothing was changed"


class StepFailed(Failed):
    pass


class EvacuationApproval(Approval):
    approve: bool = Field(False, description="Tick to evacuate as planned; leave it to refuse")


class Step(BaseModel):
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


Reason = Annotated[str, Field(min_length=3, max_length=200, description="Why, for the NetBox journal")]
Ticket = Annotated[str, Field(pattern=NAME_PATTERN, description="Change or incident ticket, e.g. CHG-1234")]
Rack = Annotated[
    str, Field(pattern=OPTIONAL_NAME_PATTERN, description="Only this rack; empty: the whole site")
]


class Run:
    """What a run needs at every step, and its timeline."""

    STEPS = 6  # either way: NetBox, Ceph, drain, switches, the service verified, NetBox

    def __init__(self, nb: Any, vault: Vault, sites: dict[str, Site], report: EvacuationReport) -> None:
        self.nb, self.vault, self.sites, self.report = nb, vault, sites, report
        self.progress: Progress | None = None
        self.devices = {d.name: d for s in sites.values() for d in s.devices}
        # servers and the client are reached here; switches through the fabric flow's own reads
        self.creds = credentials(vault, [d for d in self.devices.values() if not d.role.is_switch])

    def cred(self, device: Device) -> Credential:
        return self.creds[(device.site, device.role.value)]

    def step(self, name: str, changed: list[str], verified: str) -> None:
        at = datetime.now(UTC).strftime("%H:%M:%S")
        self.report.timeline.append(Step(at=at, step=name, changed=changed, verified=verified))
        if self.progress is not None:
            self.progress.finished(name)
        get_run_logger().info("%s: changed %s; verified: %s", name, ", ".join(changed) or "nothing", verified)

    def client(self) -> Device | None:
        return next(
            (d for d in self.devices.values() if d.role == Role.CLIENT and d.status == DeviceStatus.ACTIVE),
            None,
        )

    def probe(self, addresses: list[str], count: int = 30) -> Answers | None:
        client = self.client()
        if client is None or not addresses:
            return None
        answers = Answers()
        for address in addresses:
            answers += probe(client, self.cred(client), IPv4Address(address), count=count)
        return answers


@task(name="read every site from NetBox", cache_policy=NO_CACHE)
def read_sites() -> tuple[Any, Vault, dict[str, Site]]:
    nb, vault = sources()
    return nb, vault, {name: read_site(nb, name) for name in site_names(nb)}


def why(action: str, ticket: str, reason: str) -> str:
    """The reason as the journal of every device and switch gets it."""
    return f"{action} {ticket}: {reason}"


@task(name="plan", cache_policy=NO_CACHE)
def plan(run: Run, scope: Scope, reason: str, ticket: str, headroom: float) -> EvacuationPlan:
    addresses = sorted({str(a.ip) for d in run.devices.values() for a in d.anycast})
    try:
        now = run.probe(addresses)
    except ProbeFailed as e:
        raise EvacuationRefused([f"cannot tell who serves now: {e}"]) from None
    answering = sorted(now.by_host) if now is not None else None
    the_plan = evacuation.plan_evacuation(run.sites, scope, answering, headroom)
    # checked here, since the cost-out step would refuse it half-way through
    the_plan.problems += [p for p in [text_problem("reason", why("evacuate", ticket, reason))] if p]
    if not the_plan.problems and the_plan.switches:
        # the fabric's own guard, for everything outside the scope: found now, not half-way through
        view = read_view(run.nb, scope.site)
        states = fabric.read_states(view, credentials(run.vault, live_switches(view)), live_switches(view))
        the_plan.problems += fabric.last_path_problems(
            view, set(the_plan.switches), states, leaving=frozenset(the_plan.devices)
        )
    if the_plan.problems:
        raise EvacuationRefused(the_plan.problems)
    return the_plan


def ask_approval(the_plan: EvacuationPlan, reason: str, ticket: str, timeout: int) -> EvacuationApproval:
    try:
        return ask(
            EvacuationApproval,
            evacuation.plan_markdown(the_plan, reason, ticket)
            + "\n\nTick **approve** and give your name to evacuate; leave it unticked to refuse.",
            timeout,
        )
    except NotApproved as e:
        raise NotApproved(f"{e}; nothing was changed") from None


def journal_scope(nb: Any, scope: Scope, comments: str, kind: str = "info") -> None:
    if scope.rack:
        add_object_journal_entry(nb, "dcim.rack", scope.rack, comments, kind)
    else:
        add_object_journal_entry(nb, "dcim.site", scope.site, comments, kind)


def ceph_noout(run: Run, buckets: list[str], on: bool) -> None:
    name = "Ceph noout " + ("on" if on else "off")
    if not buckets:
        run.step(name, [], "no storage server in scope")
        return
    ceph = cluster()
    existing = [b for b in buckets if b in ceph.buckets()]
    flags = ceph.group_flags()
    todo = [b for b in existing if ("noout" in flags.get(b, set())) != on]
    if todo:
        (ceph.set_group_noout if on else ceph.unset_group_noout)(todo)
    flags = ceph.group_flags()
    wrong = [b for b in existing if ("noout" in flags.get(b, set())) != on]
    if wrong:
        raise StepFailed(f"{name}: Ceph still shows {', '.join(wrong)} {'without' if on else 'with'} noout")
    absent = sorted(set(buckets) - set(existing))
    run.step(
        name,
        [f"ceph:{b}" for b in todo],
        f"group flags of {', '.join(existing) or 'no bucket'} read back"
        + (f"; {', '.join(absent)}: no OSD in CRUSH, nothing to protect" if absent else ""),
    )


def workloads(run: Run, servers: list[str], drain: bool) -> None:
    services = LabServices(run.cred)

    def converge(host: Device) -> bool:
        """True when it had to change; the drain state is read back either way."""
        changed = services.drained(host) != drain
        if changed:
            (services.drain if drain else services.undrain)(host)
        if services.drained(host) != drain:
            raise StepFailed(f"{'drain' if drain else 'undrain'}: {host.name} did not follow")
        return changed

    hosts = [run.devices[n] for n in servers]
    changed = [h.name for h, did in zip(hosts, each_device(converge, hosts), strict=True) if did]
    run.step("drain" if drain else "undrain", changed, f"drain state of {len(servers)} server(s) read back")


def switches(run: Run, names: list[str], cost_out: bool, why: str, leaving: frozenset[str]) -> None:
    changed = []
    for name in names:
        result = change_cost(name, why, cost_out=cost_out, force=False, dry_run=False, leaving=leaving)
        if not result.detail.startswith("already"):
            changed.append(name)
    verb = "cost out" if cost_out else "cost in"
    run.step(
        verb, changed, f"traffic {'avoids' if cost_out else 'uses'} each switch, read from its neighbours"
    )


def verify_service(run: Run, addresses: list[str], scope_servers: list[str], back: bool) -> None:
    """Out: nobody in the scope answers and nothing fails. Back: every announcing server of the
    scope answers again. Read until routing shows it, bounded."""
    deadline = time.monotonic() + VERIFY_TIMEOUT_S
    while True:
        answers = run.probe(addresses, count=40)
        if answers is None:
            run.step("verify the service", [], "no client or no service address: nothing to verify")
            return
        inside = sorted(h for h in answers.by_host if h in scope_servers)
        missing = sorted(set(scope_servers) - set(answers.by_host))
        problems = []
        if answers.errors:
            problems.append(f"{sum(answers.errors.values())} request(s) failed ({dict(answers.errors)})")
        if not back and inside:
            problems.append(f"still answered by {', '.join(inside)}")
        if back and missing:
            problems.append(f"not answered by {', '.join(missing)} yet")
        if not problems:
            served = ", ".join(f"{h} {n}" for h, n in sorted(answers.by_host.items()))
            run.step("verify the service", [], f"{sum(answers.by_host.values())} requests answered: {served}")
            return
        if time.monotonic() > deadline:
            raise StepFailed("verify the service: " + "; ".join(problems))
        time.sleep(2)


def mark(run: Run, names: list[str], value: str | None) -> list[str]:
    return [n for n in names if set_custom_fields(run.nb, n, {EVACUATION_FIELD: value}).changed]


def statuses(run: Run, servers: list[str], status: DeviceStatus) -> list[str]:
    return [n for n in servers if set_device_status(run.nb, n, status).changed]


@flow(name="evacuate")
@form
def evacuate(
    site: SiteName,
    reason: Reason,
    ticket: Ticket,
    rack: Rack = "",
    approval_timeout_s: Annotated[
        int, Field(ge=10, le=86400, description="How long to wait for an approval before giving up")
    ] = 3600,
    headroom: Annotated[
        float,
        Field(
            gt=0,
            le=10,
            description="How much more load each server outside the scope can take (1.0: twice its own)",
        ),
    ] = 1.0,
    dry_run: DryRun = True,
) -> EvacuationReport:
    scope = Scope(site, rack or None)
    nb, vault, sites = read_sites()
    report = EvacuationReport(scope=str(scope), action="evacuate", dry_run=dry_run, plan={})
    run = Run(nb, vault, sites, report)
    the_plan = plan(run, scope, reason, ticket, headroom)
    report.plan = {
        "servers": the_plan.servers,
        "service addresses": the_plan.service_addresses,
        "switches": the_plan.switches,
        "ceph noout": the_plan.ceph_buckets,
        "remaining servers": the_plan.remaining,
        "already done": the_plan.already,
    }
    if dry_run:
        publish_report(report)
        return report
    # a run resuming an approved evacuation has nothing left to mark
    run.progress = Progress(f"evacuate {scope}", total=Run.STEPS if the_plan.to_do else Run.STEPS - 1)
    if the_plan.to_do:
        answer = ask_approval(the_plan, reason, ticket, approval_timeout_s)
        report.approval = f"approved by {answer.approver}: {answer.comment or 'no comment'}"
        journal_scope(nb, scope, f"evacuate {ticket} {run_name()}: {report.approval}\n\n{reason}")
        run.step("NetBox: mark the scope", mark(run, the_plan.to_do, ticket), "recorded before any change")
    try:
        ceph_noout(run, the_plan.ceph_buckets, on=True)
        workloads(run, the_plan.servers, drain=True)
        leaving = frozenset(the_plan.devices)
        switches(run, the_plan.switches, True, why("evacuate", ticket, reason), leaving)
        verify_service(run, the_plan.service_addresses, the_plan.announcing, back=False)
        offline = statuses(run, the_plan.servers, DeviceStatus.OFFLINE)
        for name in offline:
            add_journal_entry(nb, name, f"evacuate {ticket} {run_name()}: offline ({reason})", kind="warning")
        run.step("NetBox: servers offline", offline, "statuses written")
    except Exception as e:
        journal_scope(nb, scope, f"evacuate {ticket} {run_name()} FAILED: {e}", kind="danger")
        publish_report(report)
        raise
    if report.changed:
        journal_scope(
            nb, scope, f"evacuate {ticket} {run_name()}: done, traffic verified away", kind="success"
        )
    publish_report(report)
    return report


@flow(name="restore")
@form
def restore(
    site: SiteName, reason: Reason, ticket: Ticket, rack: Rack = "", dry_run: DryRun = True
) -> EvacuationReport:
    scope = Scope(site, rack or None)
    nb, vault, sites = read_sites()
    back: RestorePlan = evacuation.plan_restore(sites, scope)
    back.problems += [p for p in [text_problem("reason", why("restore", ticket, reason))] if p]
    if back.problems:
        raise EvacuationRefused(back.problems)
    report = EvacuationReport(
        scope=str(scope),
        action="restore",
        dry_run=dry_run,
        plan={"servers": back.servers, "switches": back.switches, "ceph noout": back.ceph_buckets},
    )
    run = Run(nb, vault, sites, report)
    if dry_run or not back.devices:
        publish_report(report)
        return report
    addresses = sorted({str(a.ip) for n in back.announcing for a in run.devices[n].anycast})
    run.progress = Progress(f"restore {scope}", total=Run.STEPS)
    try:
        run.step(
            "NetBox: servers active", statuses(run, back.servers, DeviceStatus.ACTIVE), "statuses written"
        )
        switches(run, back.switches, False, why("restore", ticket, reason), frozenset())
        workloads(run, back.servers, drain=False)
        verify_service(run, addresses, back.announcing, back=True)
        ceph_noout(run, back.ceph_buckets, on=False)
        run.step("NetBox: marks cleared", mark(run, back.devices, None), "the scope is no longer evacuated")
    except Exception as e:
        journal_scope(nb, scope, f"restore {ticket} {run_name()} FAILED: {e}", kind="danger")
        publish_report(report)
        raise
    journal_scope(
        nb, scope, f"restore {ticket} {run_name()}: done, traffic verified back: {reason}", kind="success"
    )
    publish_report(report)
    return report


def publish_report(report: EvacuationReport) -> None:
    title = f"{report.action} {report.scope}" + (" (dry run: plan)" if report.dry_run else "")
    publish(
        f"{report.action}-{report.scope.replace(' ', '-')}",
        title,
        [f"{what}: {', '.join(items) or 'none'}" for what, items in report.plan.items()]
        + ([report.approval] if report.approval else [])
        + ([] if report.dry_run or report.changed else ["no change: the scope was already in that state"]),
        [
            {"at": s.at, "step": s.step, "changed": ", ".join(s.changed) or "-", "verified": s.verified}
            for s in report.timeline
        ],
    )
