"""Fabric maintenance.

fabric-apply: chosen switches (a site, a rack of it, or named switches) -> their NetBox intent:
render, diff, push only the difference, verify adjacencies. Dry run shows the diff only.

fabric-cost-out / fabric-cost-in: read the site and the live routing state -> refuse to cut anything off
its last working path (unless forced) -> record the maintenance state in NetBox (it is part of the
intent) -> push `max-metric router-lsa administrative` (or remove it) -> verify from the neighbours'
routing tables that traffic avoids the switch (or uses it again) -> journal entry -> report.

The logic is in atlas.runbooks.fabric; this module names the steps and sequences them.
"""

from __future__ import annotations

from typing import Annotated

import pynetbox
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.model import Device
from atlas.core.run import Readings, Result, Results
from atlas.net.intent import RoutingState
from atlas.prefect.forms import NAME_PATTERN, OPTIONAL_NAME_PATTERN, DryRun, Names, SiteName, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.progress import RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import run_name, sources
from atlas.runbooks import fabric
from atlas.runbooks.fabric import CostChange, SelectionError
from atlas.runbooks.site import Creds, SiteView, credentials, live_switches, read_view, site_of_switch

SwitchName = Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox name of the switch")]
Reason = Annotated[str, Field(min_length=3, max_length=200, description="Why, for the NetBox journal")]


@task(name="read the site from NetBox", cache_policy=NO_CACHE)
def read_site(site: str | None, switch: str | None = None) -> tuple[pynetbox.api, SiteView, Creds]:
    """The site named, or the one `switch` is in; the credentials of its live switches."""
    nb, vault = sources()
    view = read_view(nb, site or site_of_switch(nb, str(switch)))
    return nb, view, credentials(vault, live_switches(view))


@task(name="read live routing state", cache_policy=NO_CACHE)
def live_state(view: SiteView, creds: Creds, switches: list[Device]) -> Readings[RoutingState]:
    return fabric.read_states(view, creds, switches)


@task(name="push the intent", cache_policy=NO_CACHE)
def push(view: SiteView, switches: list[Device], creds: Creds, dry_run: bool) -> Results:
    return fabric.logged(fabric.apply_intent(view, switches, creds, dry_run), RunEvents())


@task(name="verify adjacencies", cache_policy=NO_CACHE)
def verify_adjacencies(
    view: SiteView, switches: list[Device], creds: Creds, before: Readings[RoutingState]
) -> list[str]:
    return fabric.verify_adjacencies(view, switches, creds, before)


@task(name="journal the changed switches", cache_policy=NO_CACHE)
def journal_applied(nb: pynetbox.api, view: SiteView, results: Results) -> None:
    fabric.journal_applied(nb, view, results, run_name())


@task(name="decide the cost change", cache_policy=NO_CACHE)
def decide(
    view: SiteView, states: Readings[RoutingState], switch: str, reason: str, cost_out: bool, force: bool
) -> CostChange:
    [change] = fabric.plan_costs(view, states, [switch], reason, cost_out, force)
    return change


@task(name="change the cost, verified from the neighbours", cache_policy=NO_CACHE)
def change_cost(nb: pynetbox.api, change: CostChange, creds: Creds, dry_run: bool) -> Result:
    return fabric.change_cost(nb, change, creds, dry_run, run_name(), RunEvents())


def diff_of(results: Results) -> dict[str, str]:
    return {r.target: "; ".join(r.diff) for r in results if r.diff}


@flow(name="fabric-apply")
@form
def fabric_apply(
    site: SiteName,
    rack: Annotated[
        str, Field(pattern=OPTIONAL_NAME_PATTERN, description="Only this rack's switches (optional)")
    ] = "",
    switches: Annotated[
        Names,
        Field(
            description="Only these switches (optional); empty with no rack: every active switch of the site"
        ),
    ] = [],  # noqa: B006 - Prefect forms need a literal default; the list is never mutated
    dry_run: DryRun = True,
) -> list[Result]:
    nb, view, creds = read_site(site)
    chosen = fabric.select_switches(view, rack or None, switches)
    problems = fabric.config_problems(view, chosen)
    if problems:
        raise SelectionError(problems)
    with exclusive(*rack_limits(chosen)):
        before = Readings[RoutingState]({}, {}) if dry_run else live_state(view, creds, chosen)
        results = push(view, chosen, creds, dry_run)
        changed = results.changed_targets
        if not dry_run and changed:
            pushed = [d for d in chosen if d.name in changed]
            results += [
                Result.failure(site, "verify", p) for p in verify_adjacencies(view, pushed, creds, before)
            ]
            journal_applied(nb, view, results)
    diffs = diff_of(results)
    publish(
        f"fabric-apply-{site}" + (f"-{rack}" if rack else ""),
        f"fabric-apply {site}{'/' + rack if rack else ''}{' (dry run)' if dry_run else ''}",
        [
            f"switches {'would change' if dry_run else 'changed'}: **{len(changed)}** of {len(chosen)}",
            f"failed: **{len(results.failed)}**",
        ],
        results.rows(diff=lambda name: diffs.get(name, "")),
    )
    results.raise_on_error("fabric-apply")
    return results


def cost(switch: str, reason: str, cost_out: bool, force: bool, dry_run: bool) -> Result:
    """The switch's site and its live switches' state read once, the change decided on them, made,
    and reported."""
    nb, view, creds = read_site(None, switch)
    states = live_state(view, creds, live_switches(view))
    change = decide(view, states, switch, reason, cost_out, force)
    result = change_cost(nb, change, creds, dry_run)
    verb = change.verb
    publish(
        f"fabric-{verb}-{switch}",
        f"fabric-{verb} {switch}{' (dry run)' if dry_run else ''}",
        [result.detail],
        Results([result]).rows(diff=lambda _: "; ".join(result.diff)),
    )
    return result


@flow(name="fabric-cost-out")
@form
def fabric_cost_out(
    switch: SwitchName,
    reason: Reason,
    force: Annotated[bool, Field(description="Cost out even if something loses its last path")] = False,
    dry_run: DryRun = True,
) -> Result:
    return cost(switch, reason, cost_out=True, force=force, dry_run=dry_run)


@flow(name="fabric-cost-in")
@form
def fabric_cost_in(switch: SwitchName, reason: Reason, dry_run: DryRun = True) -> Result:
    return cost(switch, reason, cost_out=False, force=False, dry_run=dry_run)
