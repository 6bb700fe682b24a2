"""Fabric maintenance.

fabric-apply: chosen switches (a site, a rack of it, or named switches) -> their NetBox intent:
render, diff, push only the difference, verify adjacencies. Dry run shows the diff only.

fabric-cost-out / fabric-cost-in: read the site and the live OSPF state -> refuse to cut anything off
its last working path (unless forced) -> record the maintenance state in NetBox (it is part of the
intent) -> push `max-metric router-lsa administrative` (or remove it) -> verify from the neighbours'
routing tables that traffic avoids the switch (or uses it again) -> journal entry -> report.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.core.errors import Failed
from atlas.core.model import Credential, Device
from atlas.core.run import Result
from atlas.core.safety import text_problem
from atlas.net.verify import routing_problems
from atlas.prefect.forms import NAME_PATTERN, OPTIONAL_NAME_PATTERN, DryRun, Names, SiteName, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.reports import publish
from atlas.prefect.sources import run_name, sources
from atlas.runbooks import fabric
from atlas.runbooks.site import SiteView, credentials, live_switches, read_view, site_of_switch
from atlas.sot.schema import COST_OUT_FIELD
from atlas.sot.write import add_journal_entry, set_custom_fields

SwitchName = Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox name of the switch")]
Creds = dict[tuple[str, str], Credential]


class FabricFailed(Failed):
    pass


class CostOutRefused(Failed):
    pass


@task(name="read the site from NetBox", cache_policy=NO_CACHE)
def read_site(site: str | None, switch: str | None = None) -> tuple[Any, SiteView, Creds]:
    """The site named, or the one `switch` is in."""
    nb, vault = sources()
    view = read_view(nb, site or site_of_switch(nb, str(switch)))
    return nb, view, credentials(vault, live_switches(view))


@task(name="push the intent", cache_policy=NO_CACHE)
def push(view: SiteView, switches: list[Device], creds: Creds, dry_run: bool) -> list[Result]:
    results = fabric.apply_intent(view, switches, creds, dry_run)
    for r in results:
        get_run_logger().info("%s: %s", r.target, r.detail)
    return results


@task(name="verify adjacencies", cache_policy=NO_CACHE)
def verify_adjacencies(
    view: SiteView, switches: list[Device], creds: Creds, before: dict[str, Any]
) -> list[str]:
    """No adjacency that was Full before the push is lost, and every link between two of the pushed
    switches comes up Full (a link to a switch outside the push may be down for its own reasons)."""
    names = {d.name for d in switches}

    def wanted(d: Device) -> list[str]:
        was = before.get(d.name)
        kept = set(was.full_neighbours_on) if was is not None else set()
        return sorted(kept | {p for p, peer in view.peers(d.name) if peer.name in names})

    deadline = time.monotonic() + 60
    while True:
        states = fabric.read_states(view, creds, switches)
        problems = []
        for d in switches:
            state = states[d.name]
            if state is None:
                problems.append(f"{d.name}: routing state could not be read")
            else:
                problems += routing_problems(d, state, wanted(d), [])
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1)


def rows(results: list[Result]) -> list[dict[str, str]]:
    return [
        {
            "switch": r.target,
            "result": "failed" if r.failed else "changed" if r.changed else "unchanged",
            "detail": r.detail,
            "diff": "; ".join(r.diff),
        }
        for r in results
    ]


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
        raise fabric.SelectionError(problems)
    with exclusive(*rack_limits(chosen)):
        before = {} if dry_run else fabric.read_states(view, creds, chosen)
        results = push(view, chosen, creds, dry_run)
        changed = [r for r in results if r.changed and not r.failed]
        if not dry_run and changed:
            pushed = [d for d in chosen if d.name in {r.target for r in changed}]
            verify = verify_adjacencies(view, pushed, creds, before)
            results += [Result.failure(site, "verify", p) for p in verify]
            for r in changed:
                add_journal_entry(
                    nb, r.target, f"fabric-apply {run_name()}:\n" + "\n".join(f"- `{x}`" for x in r.diff)
                )
    failed = [r for r in results if r.failed]
    verb = "would change" if dry_run else "changed"
    publish(
        f"fabric-apply-{site}" + (f"-{rack}" if rack else ""),
        f"fabric-apply {site}{'/' + rack if rack else ''}{' (dry run)' if dry_run else ''}",
        [f"switches {verb}: **{len(changed)}** of {len(chosen)}", f"failed: **{len(failed)}**"],
        rows(results),
    )
    if failed:
        raise FabricFailed("; ".join(f"{r.target}: {r.detail}" for r in failed))
    return results


@task(name="read live OSPF state", cache_policy=NO_CACHE)
def live_state(view: SiteView, creds: Creds) -> dict[str, Any]:
    return fabric.read_states(view, creds, live_switches(view))


@task(name="verify traffic from the neighbours", cache_policy=NO_CACHE)
def verify_traffic(
    view: SiteView, target: str, neighbours: list[Device], creds: Creds, cost_out: bool
) -> list[str]:
    """OSPF needs a moment to flood the new LSA and rerun SPF: read until it shows, bounded."""
    deadline = time.monotonic() + 60
    while True:
        states = fabric.read_states(view, creds, neighbours)
        problems = fabric.traffic_problems(view, target, neighbours, states, costed_out=cost_out)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(1)


def change_cost(
    switch: str,
    reason: str,
    cost_out: bool,
    force: bool,
    dry_run: bool,
    leaving: frozenset[str] = frozenset(),
) -> Result:
    """`leaving`: devices an evacuation takes out with the switch, so their lost paths are intended."""
    log = get_run_logger()
    verb = "cost-out" if cost_out else "cost-in"
    problem = text_problem("reason", reason)
    if problem:
        raise fabric.SelectionError([problem])
    nb, view, creds = read_site(None, switch)
    [target] = fabric.select_switches(view, None, [switch])  # an active switch of the site, or refused
    states = live_state(view, creds)
    neighbours = fabric.adjacent_neighbours(view, switch, states)
    log.info(
        "verifying from %s", ", ".join(n.name for n in neighbours) or "no neighbour with a Full adjacency"
    )
    overridden = fabric.last_path_problems(view, {switch}, states, leaving) if cost_out else []
    if overridden and not force:
        raise CostOutRefused(
            f"cost-out of {switch} refused, nothing changed (force=true overrides):\n"
            + "\n".join(f"  - {p}" for p in overridden)
        )
    for p in overridden:
        log.warning("forced despite: %s", p)
    intended = fabric.with_cost_out(view, switch, cost_out)
    [result] = push(intended, [intended.devices[switch]], creds, dry_run=True)
    recorded = fabric.is_costed_out(target) == cost_out
    if dry_run or (recorded and not result.changed):
        if not dry_run:
            problems = verify_traffic(view, switch, neighbours, creds, cost_out)
            if problems:
                raise FabricFailed(
                    f"{switch} is recorded as {verb} but traffic disagrees: " + "; ".join(problems)
                )
        detail = result.detail if dry_run else f"already {verb}; traffic verified"
        return result.model_copy(update={"detail": detail})
    set_custom_fields(nb, switch, {COST_OUT_FIELD: cost_out})
    [result] = push(intended, [intended.devices[switch]], creds, dry_run=False)
    if result.failed:
        raise FabricFailed(f"{switch}: {result.detail} (NetBox records {verb}; a re-run converges)")
    problems = verify_traffic(intended, switch, neighbours, creds, cost_out)
    forced = f" (forced past the last-path guard: {'; '.join(overridden)})" if overridden else ""
    add_journal_entry(
        nb,
        switch,
        f"fabric-{verb} {run_name()}{forced}: {reason}\n"
        + (
            "- traffic verified from the neighbours"
            if not problems
            else "- NOT verified: " + "; ".join(problems)
        ),
        kind="info" if not problems else "warning",
    )
    if problems:
        raise FabricFailed(f"{verb} of {switch} pushed, but traffic disagrees: " + "; ".join(problems))
    return result.model_copy(update={"detail": f"{verb}: {result.detail}; traffic verified"})


def report_cost(switch: str, verb: str, result: Result, dry_run: bool) -> None:
    publish(
        f"fabric-{verb}-{switch}",
        f"fabric-{verb} {switch}{' (dry run)' if dry_run else ''}",
        [result.detail],
        rows([result]),
    )


Reason = Annotated[str, Field(min_length=3, max_length=200, description="Why, for the NetBox journal")]


@flow(name="fabric-cost-out")
@form
def fabric_cost_out(
    switch: SwitchName,
    reason: Reason,
    force: Annotated[bool, Field(description="Cost out even if something loses its last path")] = False,
    dry_run: DryRun = True,
) -> Result:
    result = change_cost(switch, reason, cost_out=True, force=force, dry_run=dry_run)
    report_cost(switch, "cost-out", result, dry_run)
    return result


@flow(name="fabric-cost-in")
@form
def fabric_cost_in(switch: SwitchName, reason: Reason, dry_run: DryRun = True) -> Result:
    result = change_cost(switch, reason, cost_out=False, force=False, dry_run=dry_run)
    report_cost(switch, "cost-in", result, dry_run)
    return result
