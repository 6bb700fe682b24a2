"""rack-bringup: a planned rack in NetBox becomes a working, active rack.

Runbook: read the rack from NetBox -> preflight (nothing touched on any problem) -> credentials ->
reachability -> cabling (LLDP vs NetBox; a mismatch stops before any config) -> switch config (diff,
push only the difference) -> verify OSPF and routes -> host baseline (Ansible) -> verify a server
reaches another rack -> NetBox: planned -> active, journal -> report.
"""

from __future__ import annotations

from typing import Annotated, Any

import pynetbox
import requests
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from atlas import bringup
from atlas.locks import exclusive, rack_limit_name
from atlas.model import Result
from atlas.net.sessions import one_connection_per_device
from atlas.secrets import Credential, Vault
from flows.common import NAME_PATTERN, DryRun, Progress, SiteName, form, publish, run_name, sources


class BringupFailed(RuntimeError):
    pass


class BringupReport(BaseModel):
    site: str
    rack: str
    dry_run: bool
    changed: int = Field(description="devices changed (or that would change, in a dry run)")
    failed: int
    rows: list[dict[str, str]]
    netbox_changes: list[str] = []


BRINGUP_STEPS = 8  # the progress bar's steps, up to NetBox


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


@task(name="cabling (LLDP against NetBox)", cache_policy=NO_CACHE)
def cabling(scope: bringup.RackScope, creds: dict[str, Credential]) -> None:
    problems = bringup.check_rack_cabling(scope, creds)
    if problems:
        raise BringupFailed(
            "cabling differs from NetBox; no configuration was pushed:\n" + "\n".join(problems)
        )


@task(name="switch configuration", cache_policy=NO_CACHE)
def switches(scope: bringup.RackScope, creds: dict[str, Credential], dry_run: bool) -> list[Result]:
    results = bringup.configure_switches(scope, creds, dry_run)
    for r in results:
        get_run_logger().info("%s: %s", r.target, r.detail)
    return results


@task(name="verify OSPF and routes", cache_policy=NO_CACHE)
def verify_routing(scope: bringup.RackScope, creds: dict[str, Credential]) -> None:
    problems = bringup.verify_routing(scope, creds)
    if problems:
        raise BringupFailed("routing did not converge:\n" + "\n".join(problems))


@task(name="host baseline (Ansible)", cache_policy=NO_CACHE)
def hosts(scope: bringup.RackScope, creds: dict[str, Credential], dry_run: bool) -> list[Result]:
    log = get_run_logger()
    return bringup.configure_hosts(scope, creds, dry_run, log=log.info)


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
    progress.finished("intent read from NetBox")
    preflight(scope)
    progress.finished("preflight passed")
    with exclusive(rack_limit_name(site, rack)), one_connection_per_device():
        creds = credentials(scope, vault)
        reachability(scope)
        progress.finished("every device answers SSH")
        cabling(scope, creds)
        progress.finished("cabling matches NetBox")
        results = switches(scope, creds, dry_run)
        progress.finished("switch configuration")
        if not dry_run and not any(r.failed for r in results):
            verify_routing(scope, creds)
            progress.finished("OSPF Full, routes present")
        if not any(r.failed for r in results):
            results += hosts(scope, creds, dry_run)
            progress.finished("host baseline")
        if not dry_run and not any(r.failed for r in results):
            results += verify_paths(scope, creds)
            progress.finished("server to server over the fabric")
        failed = [r for r in results if r.failed]
        netbox = [] if dry_run or failed else record(nb, scope, results)
    progress.end(f"{len(failed)} failed" if failed else "dry run done" if dry_run else "done")
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
    publish_report(report)
    if failed:
        raise BringupFailed(
            f"{len(failed)} step(s) failed; rack {rack} stays {scope.members[0].status.value}: "
            + "; ".join(f"{r.target}: {r.detail}" for r in failed)
        )
    log.info("rack %s: %d device(s) %s", rack, report.changed, "would change" if dry_run else "changed")
    return report
