"""config-sweep: is every active device what NetBox says it is?

Runbook, per site: read NetBox -> switches (running config against the rendered intent), hosts (state
read in one SSH command against the baseline playbook's variables), cabling (LLDP against NetBox),
each in parallel with a bounded number of SSH sessions -> remediate the areas asked for (or show what would be done) -> record
compliance on every device, a journal entry only where the state changed -> report. A device that
could not be checked is reported and fails the run after the others are swept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.errors import Failed
from atlas.core.run import Result
from atlas.hosts import baseline
from atlas.prefect.forms import Names, form
from atlas.prefect.reports import publish
from atlas.prefect.sources import sources
from atlas.runbooks import fabric, sweep
from atlas.runbooks.site import SiteView, credentials, read_view
from atlas.runbooks.sweep import Area, Creds
from atlas.sot.read import site_names


class SweepIncomplete(Failed):
    pass


@task(name="read the site from NetBox", cache_policy=NO_CACHE)
def read_site(site: str) -> tuple[Any, SiteView, Creds]:
    nb, vault = sources()
    view = read_view(nb, site)
    return nb, view, credentials(vault, sweep.active(view))


@task(name="switches: running against intent", cache_policy=NO_CACHE)
def check_switches(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    return sweep.check_switches(view, creds, limit)


@task(name="hosts: state against the baseline", cache_policy=NO_CACHE)
def check_hosts(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    return sweep.check_hosts(view, creds, limit)


@task(name="cabling: LLDP against NetBox", cache_policy=NO_CACHE)
def check_cabling(view: SiteView, creds: Creds, limit: int) -> list[Result]:
    return sweep.check_cabling_of(view, creds, limit)


@task(name="remediate", cache_policy=NO_CACHE)
def remediate(
    view: SiteView,
    creds: Creds,
    findings: list[Result],
    areas: list[Area],
    dry_run: bool,
    limit: int,
) -> list[Result]:
    """Through the same paths as fabric-apply and rack bring-up; cabling needs hands in the DC."""
    drifted = {(r.step, r.target) for r in findings if r.changed and not r.failed}
    done: list[Result] = []
    if Area.SWITCHES in areas:
        switches = [d for d in sweep.active(view) if (Area.SWITCHES, d.name) in drifted]
        done += fabric.apply_intent(view, switches, creds, dry_run)
    if Area.HOSTS in areas:
        servers = [d for d in sweep.active(view) if (Area.HOSTS, d.name) in drifted]
        hosts = baseline.inventory(view.site, view.devices, servers)
        done += baseline.run(
            hosts, view.devices, lambda d: creds[(d.site, d.role.value)], check=dry_run, forks=limit
        )
    for r in done:
        get_run_logger().info("remediation %s: %s", r.target, r.detail)
    return done


def after_remediation(findings: list[Result], remediated: list[Result], dry_run: bool) -> list[Result]:
    """A finding whose device was remediated without failure is now in line; the report keeps both."""
    area_of = {"switch-config": Area.SWITCHES, baseline.PLAYBOOK: Area.HOSTS}
    fixed = set() if dry_run else {(area_of.get(r.step), r.target) for r in remediated if not r.failed}
    return [
        r.model_copy(update={"changed": False, "detail": f"remediated; found: {r.detail}"})
        if (r.step, r.target) in fixed
        else r
        for r in findings
    ]


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: Any, view: SiteView, found: list[Result], remediated: list[Result]) -> dict[str, str]:
    return sweep.record(nb, view, found, remediated, datetime.now(UTC))


def rows(results: list[Result]) -> list[dict[str, str]]:
    return [
        {
            "device": r.target,
            "area": str(r.step),
            "status": "not checked" if r.failed else "drift" if r.changed else "compliant",
            "summary": r.detail,
            "diff": "; ".join(r.diff[:10]) + (" ..." if len(r.diff) > 10 else ""),
        }
        for r in sorted(results, key=lambda r: (r.target, str(r.step)))
    ]


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
    log = get_run_logger()
    nb, _ = sources()
    unknown = sorted(set(sites) - set(site_names(nb)))
    if unknown:
        raise fabric.SelectionError([f"site {s!r} is not in NetBox" for s in unknown])
    if Area.CABLING in remediate_areas:
        raise fabric.SelectionError(["cabling cannot be remediated from here: a technician re-cables"])
    everything: list[Result] = []
    for site in sites or site_names(nb):
        nb, view, creds = read_site(site)
        checks = {Area.SWITCHES: check_switches, Area.HOSTS: check_hosts, Area.CABLING: check_cabling}
        futures = [checks[a].submit(view, creds, max_sessions) for a in areas]
        findings = [r for f in futures for r in f.result()]
        done = (
            remediate(view, creds, findings, remediate_areas, dry_run, max_sessions)
            if remediate_areas
            else []
        )
        if done:
            findings = after_remediation(findings, done, dry_run) + [r for r in done if r.failed]
        journals = record(nb, view, findings, [] if dry_run else done)
        for name, line in journals.items():
            log.info("%s: %s", name, line.splitlines()[0])
        everything += findings
    drift = sorted({r.target for r in everything if r.changed and not r.failed})
    unchecked = sorted({r.target for r in everything if r.failed})
    publish(
        "config-sweep-" + ("-".join(sorted(sites)) if sites else "all"),
        "Configuration-consistency sweep" + (" (remediation dry run)" if dry_run and remediate_areas else ""),
        [
            f"devices checked: **{len({r.target for r in everything})}**",
            f"drift: **{len(drift)}** {', '.join(drift)}",
            f"not checked: **{len(unchecked)}** {', '.join(unchecked)}",
        ],
        rows(everything),
    )
    if unchecked:
        failed = [f"{r.target} ({r.step}): {r.detail}" for r in everything if r.failed]
        raise SweepIncomplete(f"partial sweep: {len(unchecked)} device(s) not checked: " + "; ".join(failed))
    return everything
