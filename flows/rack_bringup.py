"""rack-bringup: a planned rack in NetBox becomes a working, active rack.

Runbook: read the rack from NetBox -> preflight (nothing touched on any problem) -> credentials ->
discover (every server's BMC: serial and MACs against NetBox; a difference stops before anything is
powered; a new server's MACs recorded) -> install plan (the OS image NetBox names: new servers, or
re-image when the form says so) -> network boot (DHCP reservations, a one-time boot from the network)
-> power on what else is off -> wait for the installs (SSH with the image's host key; recorded in
NetBox) -> reachability -> every device's state, read once -> cabling (LLDP vs NetBox; a mismatch
stops before any config) -> switch config (diff, push only the difference) -> verify adjacencies and
routes -> host baseline (Ansible) -> verify a server reaches another rack -> NetBox: planned ->
active, journal -> report. The steps are
atlas.runbooks.bringup's and atlas.runbooks.provision's; this module sequences them and decides.
"""

from __future__ import annotations

from typing import Annotated

import pynetbox
import requests
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.bmc import Bmc
from atlas.core.run import Events, Results, TargetMap
from atlas.images.catalog import Manifest
from atlas.net.sessions import one_connection_per_device, wait_reachable
from atlas.prefect.forms import NAME_PATTERN, DryRun, SiteName, form
from atlas.prefect.locks import exclusive, rack_limit_name
from atlas.prefect.progress import Progress, RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import bmc_settings, image_sources, run_name, sources
from atlas.provisioning import ProvisioningClient
from atlas.runbooks import bringup, provision
from atlas.runbooks.bringup import BringupFailed as BringupFailed
from atlas.runbooks.bringup import BringupReport as BringupReport
from atlas.runbooks.bringup import DeviceState, RackScope
from atlas.runbooks.provision import Discovery, InstallPlan
from atlas.secrets import Vault

# The progress bar's milestones, up to NetBox: each update is an API call (~40 ms), so quick steps
# share one; the run's task list shows every step as it runs.
BRINGUP_STEPS = 4

REACH_WAIT = 30.0  # seconds for a running device to answer SSH
BOOT_WAIT = 180.0  # seconds for a server just powered on to boot far enough to answer SSH
BMCs = dict[str, Bmc]
Manifests = dict[str, Manifest | None]

# The tasks take the scope and the targets as they are: a RackScope and a TargetMap are objects that
# Prefect does not walk looking for futures (they hold the site's models; see atlas.runbooks.bringup).
States = dict[str, DeviceState]


def _status(e: Exception) -> str:
    """The HTTP status NetBox answered a write with, or what kept it from answering."""
    return str(getattr(getattr(e, "req", None), "status_code", None) or type(e).__name__)


@task(name="read intent from NetBox", cache_policy=NO_CACHE)
def read_intent(site: str, rack: str) -> tuple[pynetbox.api, RackScope, Vault]:
    nb, vault = sources()
    return nb, bringup.read_scope(nb, site, rack), vault


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(scope: RackScope) -> None:
    problems = bringup.preflight(scope)
    if problems:
        raise bringup.PreflightError(problems)
    get_run_logger().info("preflight: %d devices, no problems", len(scope.touched))


@task(name="credentials from Vault", cache_policy=NO_CACHE)
def credentials(scope: RackScope, vault: Vault) -> TargetMap:
    return bringup.rack_targets(scope, vault)


@task(name="discover (BMCs against NetBox)", cache_policy=NO_CACHE)
def discover(
    nb: pynetbox.api, scope: RackScope, vault: Vault, dry_run: bool
) -> tuple[BMCs, Discovery, Results]:
    settings = bmc_settings()
    logins = provision.bmc_logins(scope.servers, scope.site.name, vault, settings)
    bmcs = provision.connect_all(logins, settings.bmc_protocol)
    found = provision.check_discovery(
        scope.servers, scope.site.devices, provision.read_inventories(scope.servers, bmcs)
    )
    if found.problems:
        raise BringupFailed(
            "the servers' BMCs disagree with NetBox; nothing was powered or changed:\n"
            + "\n".join(found.problems)
        )
    try:
        recorded = provision.record_learnt(nb, found, dry_run)
    except (pynetbox.RequestError, requests.RequestException) as e:
        raise BringupFailed(
            f"NetBox did not take the MACs the servers' BMCs report ({_status(e)}); nothing was powered or "
            "changed: run again once NetBox answers"
        ) from None
    return bmcs, found, provision.discover_results(scope.servers, found, recorded, dry_run)


@task(name="install plan (OS images NetBox names)", cache_policy=NO_CACHE)
def install_plan(
    scope: RackScope, vault: Vault, found: Discovery, reimage: bool
) -> tuple[InstallPlan, Manifests, ProvisioningClient | None]:
    plan = provision.plan_installs(scope.servers, found, reimage)
    if not plan.wanted:
        return plan, {}, None
    catalog, client = image_sources(vault)
    manifests = {v: catalog.manifest(v) for v in sorted(set(plan.wanted.values()))}
    problems = provision.install_problems(scope.servers, plan, manifests)
    if plan.install:
        problems += client.problems()
    if problems:
        raise BringupFailed(
            "servers cannot be installed; nothing was powered or changed:\n" + "\n".join(problems)
        )
    return plan, manifests, client


@task(name="network boot", cache_policy=NO_CACHE)
def network_boot(
    nb: pynetbox.api,
    scope: RackScope,
    bmcs: BMCs,
    found: Discovery,
    plan: InstallPlan,
    client: ProvisioningClient | None,
    dry_run: bool,
    events: Events,
) -> Results:
    if client is not None and provision.reserve(client, scope.rack, scope.servers, plan, found, dry_run):
        events.info(f"DHCP: reservations of {scope.rack} for {', '.join(sorted(plan.install))}")
    try:  # their disks are about to be erased: NetBox no longer says what they run
        if not dry_run:
            provision.record_installed(nb, scope.servers, {name: "" for name in plan.install})
    except (pynetbox.RequestError, requests.RequestException) as e:
        raise BringupFailed(
            f"NetBox did not take the installs about to start ({_status(e)}); nothing was powered"
        ) from None
    results = provision.start_installs(scope.servers, bmcs, plan, found, dry_run)
    for r in results.changed:
        events.info(f"{r.target}: {r.detail}")
    bringup.stop_on_failures(results, "servers did not start their network boot")
    return results


@task(name="wait for installs", cache_policy=NO_CACHE)
def wait_installed(
    nb: pynetbox.api, scope: RackScope, bmcs: BMCs, plan: InstallPlan, manifests: Manifests, events: Events
) -> Results:
    results = provision.wait_installed(scope.servers, bmcs, plan, manifests)
    installed = provision.installed_records(plan, results)
    if installed:
        try:
            provision.record_installed(nb, scope.servers, installed)
        except (pynetbox.RequestError, requests.RequestException) as e:
            raise BringupFailed(
                f"NetBox did not take the images installed on {', '.join(sorted(installed))} ({_status(e)}); "
                "they run them: run again once NetBox answers (they are not installed again)"
            ) from None
    for r in results:
        events.info(f"{r.target}: {r.error or r.detail}")
    bringup.stop_on_failures(results, "servers did not come up from their network boot")
    return results


@task(name="power on", cache_policy=NO_CACHE)
def power_on(
    scope: RackScope, bmcs: BMCs, found: Discovery, plan: InstallPlan, dry_run: bool, events: Events
) -> Results:
    results = provision.power_on(scope.servers, bmcs, found, dry_run, frozenset(plan.install))
    for r in results.changed:
        events.info(f"{r.target}: {r.detail}")
    # named now, not after waiting for a server that never came on
    bringup.stop_on_failures(results, "servers did not power on")
    return results


@task(name="reachability", cache_policy=NO_CACHE)
def reachability(devices: TargetMap, booting: bool) -> None:
    problems = wait_reachable(devices.values(), timeout=BOOT_WAIT if booting else REACH_WAIT)
    if problems:
        raise BringupFailed("unreachable before any change:\n" + "\n".join(problems.values()))


@task(name="read device state", cache_policy=NO_CACHE)
def device_state(scope: RackScope, devices: TargetMap) -> States:
    states = bringup.read_state(scope, devices)
    if states.errors:
        raise BringupFailed("could not read before any change:\n" + "\n".join(states.problems))
    return states.values


@task(name="cabling (LLDP against NetBox)", cache_policy=NO_CACHE)
def cabling(scope: RackScope, devices: TargetMap, states: States) -> None:
    problems = bringup.check_rack_cabling(scope, devices, states)
    if problems:
        raise BringupFailed(
            "cabling differs from NetBox; no configuration was pushed:\n" + "\n".join(problems)
        )


@task(name="switch configuration", cache_policy=NO_CACHE)
def switches(scope: RackScope, devices: TargetMap, states: States, dry_run: bool, events: Events) -> Results:
    results = bringup.configure_switches(scope, devices, states, dry_run)
    for r in results:
        events.info(f"{r.target}: {r.detail}")
    return results


@task(name="verify adjacencies and routes", cache_policy=NO_CACHE)
def verify_routing(scope: RackScope, devices: TargetMap, states: States, switches_changed: bool) -> None:
    problems = bringup.verify_routing(scope, devices, states, switches_changed)
    if problems:
        raise BringupFailed("routing did not converge:\n" + "\n".join(problems))


@task(name="host baseline (Ansible)", cache_policy=NO_CACHE)
def hosts(
    scope: RackScope,
    devices: TargetMap,
    states: States,
    dry_run: bool,
    switches_changed: bool,
    events: Events,
) -> Results:
    return bringup.configure_hosts(scope, devices, states, dry_run, events, switches_changed)


@task(name="verify server to server over the fabric", cache_policy=NO_CACHE)
def verify_paths(scope: RackScope, devices: TargetMap) -> Results:
    return bringup.verify_server_paths(scope, devices)


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: pynetbox.api, scope: RackScope, results: Results) -> list[str]:
    try:
        return [f"{c.target}: {c.what}" for c in bringup.record_in_netbox(nb, scope, results, run_name())]
    except (pynetbox.RequestError, requests.RequestException) as e:
        raise BringupFailed(
            f"NetBox did not take the record ({_status(e)}): every device of {scope.rack} is configured, "
            "but the rack is not recorded as active; run again once NetBox answers"
        ) from None


@flow(name="rack-bringup")
@form
def rack_bringup(
    site: SiteName,
    rack: Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox rack, e.g. fra1-r02")],
    dry_run: DryRun = True,
    reimage: Annotated[
        bool,
        Field(
            description="Re-image: install the OS image NetBox names on servers that run another "
            "(their disks are erased). Off: only new servers are installed"
        ),
    ] = False,
) -> BringupReport:
    progress = Progress(f"rack-bringup {site}/{rack}", total=BRINGUP_STEPS)
    events = RunEvents(progress)
    nb, scope, vault = read_intent(site, rack)
    preflight(scope)
    events.step_done("NetBox data read, preflight passed")
    with exclusive(rack_limit_name(site, rack)), one_connection_per_device():
        devices = credentials(scope, vault)
        bmcs, found, results = discover(nb, scope, vault, dry_run)
        plan, manifests, client = install_plan(scope, vault, found, reimage)
        booting = network_boot(nb, scope, bmcs, found, plan, client, dry_run, events)
        powered = power_on(scope, bmcs, found, plan, dry_run, events)
        results += powered
        if dry_run and (powered.changed or booting.changed):  # what a server runs is read once it is on
            report = bringup.report(scope, dry_run, results + booting, [])
            publish(*bringup.artifact(report))
            progress.end("dry run done: servers are off, later steps are planned once they run")
            return report
        if plan.install or plan.check or plan.left:
            booting = wait_installed(nb, scope, bmcs, plan, manifests, events)
        results += booting
        reachability(devices, booting=bool(powered.changed or booting.changed))
        states = device_state(scope, devices)
        cabling(scope, devices, states)
        events.step_done("every device read, cabling matches NetBox")
        switched = switches(scope, devices, states, dry_run, events)
        results += switched
        switches_changed = not dry_run and bool(switched.changed)
        routing_checked = not dry_run and not results.failed
        if routing_checked:
            verify_routing(scope, devices, states, switches_changed)
        events.step_done(
            "switch configuration" + (", adjacencies up, routes present" if routing_checked else "")
        )
        if not results.failed:
            results += hosts(scope, devices, states, dry_run, switches_changed, events)
            events.step_done("host baseline")
        if not dry_run and not results.failed:
            results += verify_paths(scope, devices)
        netbox = [] if dry_run or results.failed else record(nb, scope, results)
    report = bringup.report(scope, dry_run, results, netbox)
    publish(*bringup.artifact(report))  # while the progress bar's last updates are still being sent
    progress.end(f"{report.failed} failed" if report.failed else "dry run done" if dry_run else "done")
    if results.failed:
        raise BringupFailed(bringup.failure(scope, results))
    events.info(f"rack {rack}: {report.changed} device(s) {'would change' if dry_run else 'changed'}")
    return report
