"""rack-bringup: a planned rack in NetBox becomes a working, active rack.

Runbook: read the rack from NetBox -> preflight (nothing touched on any problem) -> credentials ->
reachability -> every device's state, read once -> cabling (LLDP vs NetBox; a mismatch stops before
any config) -> switch config (diff, push only the difference) -> verify OSPF and routes -> host
baseline (Ansible) -> verify a server reaches another rack -> NetBox: planned -> active, journal ->
report.
"""

from __future__ import annotations

from typing import Annotated, Any

import pynetbox
import requests
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import opaque
from pydantic import BaseModel, Field

from atlas.core.errors import Failed
from atlas.core.model import Credential
from atlas.core.run import Result
from atlas.net.sessions import one_connection_per_device
from atlas.prefect.forms import NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.locks import exclusive, rack_limit_name
from atlas.prefect.progress import Progress
from atlas.prefect.reports import publish
from atlas.prefect.sources import run_name, sources
from atlas.runbooks import bringup
from atlas.secrets import Vault


class BringupFailed(Failed):
    pass


class BringupReport(BaseModel):
    site: str
    rack: str
    dry_run: bool
    changed: int = Field(description="devices changed (or that would change, in a dry run)")
    failed: int
    rows: list[dict[str, str]]
    netbox_changes: list[str] = []


# The progress bar's milestones, up to NetBox: each update is an API call (~40 ms), so quick steps
# share one; the run's task list shows every step as it runs.
BRINGUP_STEPS = 4


@task(name="read intent from NetBox", cache_policy=NO_CACHE)
def read_intent(site: str, rack: str) -> tuple[Any, bringup.RackScope, Vault]:
    nb, vault = sources()
    return nb, bringup.read_scope(nb, site, rack), vault


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(scope: bringup.RackScope) -> None:
    problems = bringup.preflight(scope)
    if problems:
        raise bringup.PreflightError(problems)
    get_run_logger().info("preflight: %d devices, no problems", len(scope.touched))


@task(name="credentials from Vault", cache_policy=NO_CACHE)
def credentials(scope: bringup.RackScope, vault: Vault) -> dict[str, Credential]:
    return bringup.credentials(scope, vault)


@task(name="reachability", cache_policy=NO_CACHE)
def reachability(scope: bringup.RackScope) -> None:
    problems = bringup.wait_reachable(scope.touched)
    if problems:
        raise BringupFailed("unreachable before any change:\n" + "\n".join(problems))


@task(name="read device state", cache_policy=NO_CACHE)
def device_state(scope: bringup.RackScope, creds: dict[str, Credential]) -> dict[str, bringup.DeviceState]:
    states, problems = bringup.read_state(scope, creds)
    if problems:
        raise BringupFailed("could not read before any change:\n" + "\n".join(problems))
    return states


@task(name="cabling (LLDP against NetBox)", cache_policy=NO_CACHE)
def cabling(
    scope: bringup.RackScope, creds: dict[str, Credential], states: dict[str, bringup.DeviceState]
) -> None:
    problems = bringup.check_rack_cabling(scope, creds, states)
    if problems:
        raise BringupFailed(
            "cabling differs from NetBox; no configuration was pushed:\n" + "\n".join(problems)
        )


@task(name="switch configuration", cache_policy=NO_CACHE)
def switches(
    scope: bringup.RackScope,
    creds: dict[str, Credential],
    states: dict[str, bringup.DeviceState],
    dry_run: bool,
) -> list[Result]:
    results = bringup.configure_switches(scope, creds, states, dry_run)
    for r in results:
        get_run_logger().info("%s: %s", r.target, r.detail)
    return results


@task(name="verify OSPF and routes", cache_policy=NO_CACHE)
def verify_routing(
    scope: bringup.RackScope,
    creds: dict[str, Credential],
    states: dict[str, bringup.DeviceState],
    switches_changed: bool,
) -> None:
    problems = bringup.verify_routing(scope, creds, states, switches_changed)
    if problems:
        raise BringupFailed("routing did not converge:\n" + "\n".join(problems))


@task(name="host baseline (Ansible)", cache_policy=NO_CACHE)
def hosts(
    scope: bringup.RackScope,
    creds: dict[str, Credential],
    states: dict[str, bringup.DeviceState],
    dry_run: bool,
    switches_changed: bool,
) -> list[Result]:
    log = get_run_logger()
    return bringup.configure_hosts(scope, creds, states, dry_run, log.info, switches_changed)


@task(name="verify server to server over the fabric", cache_policy=NO_CACHE)
def verify_paths(scope: bringup.RackScope, creds: dict[str, Credential]) -> list[Result]:
    return [Result.failure(scope.rack, "server path", p) for p in bringup.verify_server_paths(scope, creds)]


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: Any, scope: bringup.RackScope, results: list[Result]) -> list[str]:
    try:
        return [f"{c.target}: {c.what}" for c in bringup.record_in_netbox(nb, scope, results, run_name())]
    except (pynetbox.RequestError, requests.RequestException) as e:
        status = getattr(getattr(e, "req", None), "status_code", None) or type(e).__name__
        raise BringupFailed(
            f"NetBox did not take the record ({status}): every device of {scope.rack} is configured, "
            "but the rack is not recorded as active; run again once NetBox answers"
        ) from None


def publish_report(report: BringupReport) -> None:
    verb = "would change" if report.dry_run else "changed"
    publish(
        f"rack-bringup-{report.site}-{report.rack}",
        f"Rack bring-up {report.site}/{report.rack}{' (dry run)' if report.dry_run else ''}",
        [f"devices {verb}: **{report.changed}**", f"failed: **{report.failed}**"]
        + [f"NetBox: {c}" for c in report.netbox_changes],
        report.rows,
    )


@flow(name="rack-bringup")
@form
def rack_bringup(
    site: SiteName,
    rack: Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox rack, e.g. fra1-r02")],
    dry_run: DryRun = True,
) -> BringupReport:
    log = get_run_logger()
    progress = Progress(f"rack-bringup {site}/{rack}", total=BRINGUP_STEPS)
    nb, scope, vault = read_intent(site, rack)
    # the scope holds the whole site's models: Prefect need not search them for futures at every task
    rack_scope = opaque(scope)
    preflight(rack_scope)
    progress.finished("NetBox data read, preflight passed")
    with exclusive(rack_limit_name(site, rack)), one_connection_per_device():
        creds = credentials(rack_scope, vault)
        reachability(rack_scope)
        states = device_state(rack_scope, creds)
        cabling(rack_scope, creds, states)
        progress.finished("every device read, cabling matches NetBox")
        results = switches(rack_scope, creds, states, dry_run)
        switches_changed = not dry_run and any(r.changed for r in results)
        routing_checked = not dry_run and not any(r.failed for r in results)
        if routing_checked:
            verify_routing(rack_scope, creds, states, switches_changed)
        progress.finished("switch configuration" + (", OSPF Full, routes present" if routing_checked else ""))
        if not any(r.failed for r in results):
            results += hosts(rack_scope, creds, states, dry_run, switches_changed)
            progress.finished("host baseline")
        if not dry_run and not any(r.failed for r in results):
            results += verify_paths(rack_scope, creds)
        failed = [r for r in results if r.failed]
        netbox = [] if dry_run or failed else record(nb, rack_scope, results)
    rows = bringup.report_rows(scope, results)
    report = BringupReport(
        site=site,
        rack=rack,
        dry_run=dry_run,
        changed=sum(r["result"] == "changed" for r in rows),
        failed=len(failed),
        rows=rows,
        netbox_changes=netbox,
    )
    publish_report(report)  # while the progress bar's last updates are still being sent
    progress.end(f"{len(failed)} failed" if failed else "dry run done" if dry_run else "done")
    if failed:
        raise BringupFailed(
            f"{len(failed)} step(s) failed; rack {rack} stays {scope.members[0].status.value}: "
            + "; ".join(f"{r.target}: {r.detail}" for r in failed)
        )
    log.info("rack %s: %d device(s) %s", rack, report.changed, "would change" if dry_run else "changed")
    return report
