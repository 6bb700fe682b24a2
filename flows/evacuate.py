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
run stopped, and a re-run on a scope already in that state changes nothing. The steps are in
atlas.runbooks.evacuation_steps, their decisions in atlas.runbooks.evacuation; this module names
the steps and sequences them.
"""

from __future__ import annotations

from typing import Annotated

import pynetbox
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.model import Site
from atlas.core.settings import load_settings
from atlas.prefect.approvals import Approval, NotApproved, ask
from atlas.prefect.forms import NAME_PATTERN, OPTIONAL_NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.progress import Progress, RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import cluster, run_name, sources
from atlas.runbooks import evacuation_steps as steps
from atlas.runbooks.evacuation import EvacuationPlan, RestorePlan, Scope, plan_markdown, plan_summary, why
from atlas.runbooks.evacuation_steps import STEPS, EvacuationReport, Run
from atlas.secrets import Vault
from atlas.sot.read import read_site, site_names
from atlas.workloads import Workloads, workloads_from


class EvacuationApproval(Approval):
    approve: bool = Field(False, description="Tick to evacuate as planned; leave it to refuse")


Reason = Annotated[str, Field(min_length=3, max_length=200, description="Why, for the NetBox journal")]
Ticket = Annotated[str, Field(pattern=NAME_PATTERN, description="Change or incident ticket, e.g. CHG-1234")]
Rack = Annotated[
    str, Field(pattern=OPTIONAL_NAME_PATTERN, description="Only this rack; empty: the whole site")
]


def workloads(run: Run) -> Workloads:
    """The adapter that drains and undrains the scope's servers, built before anything changes (a
    scheduler's API comes from the settings or Vault: a missing one stops the run here)."""
    return workloads_from(load_settings(), run.cred, run.vault)


@task(name="read every site from NetBox", cache_policy=NO_CACHE)
def read_sites() -> tuple[pynetbox.api, Vault, dict[str, Site]]:
    nb, vault = sources()
    return nb, vault, {name: read_site(nb, name) for name in site_names(nb)}


def begin(site: str, rack: str, action: str, dry_run: bool) -> tuple[Run, RunEvents]:
    """What every step of the run needs, from every site read from NetBox; the run's events, whose
    progress bar starts once the run knows how many steps it takes."""
    nb, vault, sites = read_sites()
    events = RunEvents()
    return Run(nb, vault, sites, Scope(site, rack or None), action, dry_run, events, run_name()), events


@task(name="plan", cache_policy=NO_CACHE)
def plan(run: Run, reason: str, ticket: str, headroom: float) -> EvacuationPlan:
    return steps.plan(run, reason, ticket, headroom)


@task(name="plan the restore", cache_policy=NO_CACHE)
def restore_plan(run: Run, reason: str, ticket: str) -> RestorePlan:
    return steps.restore_plan(run, reason, ticket)


def ask_approval(the_plan: EvacuationPlan, reason: str, ticket: str, timeout: int) -> EvacuationApproval:
    try:
        return ask(
            EvacuationApproval,
            plan_markdown(the_plan, reason, ticket)
            + "\n\nTick **approve** and give your name to evacuate; leave it unticked to refuse.",
            timeout,
        )
    except NotApproved as e:
        raise NotApproved(f"{e}; nothing was changed") from None


@task(name="NetBox: mark the scope", cache_policy=NO_CACHE)
def mark_scope(run: Run, names: list[str], ticket: str) -> None:
    steps.mark_scope(run, names, ticket)


@task(name="Ceph noout on or off", cache_policy=NO_CACHE)
def ceph_noout(run: Run, buckets: list[str], on: bool) -> None:
    steps.ceph_noout(run, cluster, buckets, on)


@task(name="drain or undrain the servers", cache_policy=NO_CACHE)
def drain(run: Run, adapter: Workloads, servers: list[str], drain: bool) -> None:
    steps.drain(run, adapter, servers, drain)


@task(name="cost the switches out or in", cache_policy=NO_CACHE)
def switches(run: Run, names: list[str], cost_out: bool, reason: str, leaving: frozenset[str]) -> None:
    steps.switches(run, names, cost_out, reason, leaving)


@task(name="verify the service", cache_policy=NO_CACHE)
def verify_service(run: Run, addresses: list[str], scope_servers: list[str], back: bool) -> None:
    steps.verify_service(run, addresses, scope_servers, back)


@task(name="NetBox: servers offline", cache_policy=NO_CACHE)
def servers_offline(run: Run, servers: list[str], ticket: str, reason: str) -> None:
    steps.servers_offline(run, servers, ticket, reason)


@task(name="NetBox: servers active", cache_policy=NO_CACHE)
def servers_active(run: Run, servers: list[str]) -> None:
    steps.servers_active(run, servers)


@task(name="NetBox: marks cleared", cache_policy=NO_CACHE)
def clear_marks(run: Run, names: list[str]) -> None:
    steps.clear_marks(run, names)


def publish_report(report: EvacuationReport) -> EvacuationReport:
    publish(
        f"{report.action}-{report.scope.replace(' ', '-')}", report.title, report.summary(), report.rows()
    )
    return report


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
    run, events = begin(site, rack, "evacuate", dry_run)
    the_plan = plan(run, reason, ticket, headroom)
    run.report.plan = plan_summary(the_plan)
    if dry_run:
        return publish_report(run.report)
    adapter = workloads(run)
    # a run resuming an approved evacuation has nothing left to mark
    events.progress = Progress(f"evacuate {run.scope}", total=STEPS if the_plan.to_do else STEPS - 1)
    if the_plan.to_do:
        answer = ask_approval(the_plan, reason, ticket, approval_timeout_s)
        run.report.approval = f"approved by {answer.approver}: {answer.comment or 'no comment'}"
        run.journal(f"evacuate {ticket} {run.name}: {run.report.approval}\n\n{reason}")
        mark_scope(run, the_plan.to_do, ticket)
    try:
        ceph_noout(run, the_plan.ceph_buckets, on=True)
        drain(run, adapter, the_plan.servers, drain=True)
        switches(run, the_plan.switches, True, why("evacuate", ticket, reason), frozenset(the_plan.devices))
        verify_service(run, the_plan.service_addresses, the_plan.announcing, back=False)
        servers_offline(run, the_plan.servers, ticket, reason)
    except Exception as e:
        run.journal(f"evacuate {ticket} {run.name} FAILED: {e}", kind="danger")
        publish_report(run.report)
        raise
    if run.report.changed:
        run.journal(f"evacuate {ticket} {run.name}: done, traffic verified away", kind="success")
    return publish_report(run.report)


@flow(name="restore")
@form
def restore(
    site: SiteName, reason: Reason, ticket: Ticket, rack: Rack = "", dry_run: DryRun = True
) -> EvacuationReport:
    run, events = begin(site, rack, "restore", dry_run)
    back = restore_plan(run, reason, ticket)
    run.report.plan = {"servers": back.servers, "switches": back.switches, "ceph noout": back.ceph_buckets}
    if dry_run or not back.devices:
        return publish_report(run.report)
    adapter = workloads(run)
    addresses = sorted({str(a.ip) for n in back.announcing for a in run.devices[n].anycast})
    events.progress = Progress(f"restore {run.scope}", total=STEPS)
    try:
        servers_active(run, back.servers)
        switches(run, back.switches, False, why("restore", ticket, reason), frozenset())
        drain(run, adapter, back.servers, drain=False)
        verify_service(run, addresses, back.announcing, back=True)
        ceph_noout(run, back.ceph_buckets, on=False)
        clear_marks(run, back.devices)
    except Exception as e:
        run.journal(f"restore {ticket} {run.name} FAILED: {e}", kind="danger")
        publish_report(run.report)
        raise
    run.journal(f"restore {ticket} {run.name}: done, traffic verified back: {reason}", kind="success")
    return publish_report(run.report)
