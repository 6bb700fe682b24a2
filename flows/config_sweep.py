"""config-sweep: is every active device what NetBox says it is?

Runbook, per site: read NetBox -> switches (running config against the rendered intent), hosts (state
read in one SSH command against the baseline playbook's variables), cabling (LLDP against NetBox),
each in parallel with a bounded number of SSH sessions -> remediate the areas asked for (or show what would be done) -> record
compliance on every device, a journal entry only where the state changed -> report. A device that
could not be checked is reported and fails the run after the others are swept. The steps are
atlas.runbooks.sweep's; this module sequences them and decides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import pynetbox
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.errors import Failed
from atlas.core.run import Events, Result, Results, TargetMap
from atlas.hosts import baseline
from atlas.prefect.forms import Names, form
from atlas.prefect.progress import RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import sources
from atlas.runbooks import fabric, sweep
from atlas.runbooks.site import SiteView, read_view
from atlas.runbooks.sweep import Area
from atlas.sot.read import site_names


class SweepIncomplete(Failed):
    pass


@task(name="read the site from NetBox", cache_policy=NO_CACHE)
def read_site(site: str) -> tuple[pynetbox.api, SiteView, TargetMap]:
    nb, vault = sources()
    view = read_view(nb, site)
    return nb, view, sweep.sweep_targets(view, vault)


@task(name="switches: running against intent", cache_policy=NO_CACHE)
def check_switches(view: SiteView, devices: TargetMap, limit: int) -> Results:
    return sweep.check_switches(view, devices, limit)


@task(name="hosts: state against the baseline", cache_policy=NO_CACHE)
def check_hosts(view: SiteView, devices: TargetMap, limit: int) -> Results:
    return sweep.check_hosts(view, devices, limit)


@task(name="cabling: LLDP against NetBox", cache_policy=NO_CACHE)
def check_cabling(view: SiteView, devices: TargetMap, limit: int) -> Results:
    return sweep.check_cabling_of(view, devices, limit)


CHECKS = {Area.SWITCHES: check_switches, Area.HOSTS: check_hosts, Area.CABLING: check_cabling}


@task(name="remediate", cache_policy=NO_CACHE)
def remediate(
    view: SiteView, devices: TargetMap, findings: Results, areas: list[Area], dry_run: bool, limit: int
) -> Results:
    """Through the same paths as fabric-apply and rack bring-up; cabling needs hands in the DC."""
    events: Events = RunEvents()
    done = Results()
    if Area.SWITCHES in areas:
        creds = {(t.device.site, t.device.role.value): t.credential for t in devices.values()}
        done += fabric.apply_intent(view, sweep.drifted(view, findings, Area.SWITCHES), creds, dry_run)
    if Area.HOSTS in areas:
        drifted = [devices[d.name] for d in sweep.drifted(view, findings, Area.HOSTS)]
        hosts = baseline.inventory(view.site, view.devices, drifted)
        done += baseline.run(
            hosts, view.devices, lambda d: devices[d.name].credential, check=dry_run, forks=limit
        )
    for r in done:
        events.info(f"remediation {r.target}: {r.detail}")
    return done


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: pynetbox.api, view: SiteView, found: Results, remediated: Results) -> dict[str, str]:
    return sweep.record(nb, view, found, remediated, datetime.now(UTC))


@flow(name="config-sweep")
@form
def config_sweep(
    sites: Annotated[
        Names,
        Field(description="NetBox sites to sweep; empty: every site"),
    ] = [],  # noqa: B006 - Prefect forms need a literal default; the list is never mutated
    areas: Annotated[list[Area], Field(description="What to check")] = [  # noqa: B006
        Area.SWITCHES,
        Area.HOSTS,
        Area.CABLING,
    ],
    remediate_areas: Annotated[
        list[Area],
        Field(description="Bring drifted devices back to NetBox in these areas (cabling cannot be)"),
    ] = [],  # noqa: B006
    dry_run: Annotated[
        bool,
        Field(description="Remediation only shows what it would change (the sweep itself changes nothing)"),
    ] = False,
    max_sessions: Annotated[int, Field(ge=1, le=64, description="SSH sessions at once per area")] = 8,
) -> list[Result]:
    events = RunEvents()
    nb, _ = sources()
    unknown = sorted(set(sites) - set(site_names(nb)))
    if unknown:
        raise fabric.SelectionError([f"site {s!r} is not in NetBox" for s in unknown])
    if Area.CABLING in remediate_areas:
        raise fabric.SelectionError(["cabling cannot be remediated from here: a technician re-cables"])
    everything = Results()
    for site in sites or site_names(nb):
        nb, view, devices = read_site(site)
        futures = [CHECKS[a].submit(view, devices, max_sessions) for a in areas]
        findings = sweep.unaddressed(view, areas) + [r for f in futures for r in f.result()]
        done = (
            remediate(view, devices, findings, remediate_areas, dry_run, max_sessions)
            if remediate_areas
            else Results()
        )
        if done:
            findings = sweep.after_remediation(findings, done, dry_run)
        journals = record(nb, view, findings, Results() if dry_run else done)
        for name, line in journals.items():
            events.info(f"{name}: {line.splitlines()[0]}")
        everything += findings
    publish(*sweep.artifact(everything, sites, dry_run and bool(remediate_areas)))
    why = sweep.incomplete(everything)
    if why is not None:
        raise SweepIncomplete(why)
    return everything
