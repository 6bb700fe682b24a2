"""ceph-osd-enroll: storage servers in NetBox become Ceph OSD hosts, data never at risk.

Runbook: read the hosts from NetBox -> preflight (storage servers, active, reachable; the cluster
clean and not held by flags; every problem named, nothing touched) -> plan (existing OSDs and their
weights; the dry run stops here) -> create the missing OSDs through the ceph_osd role at CRUSH weight 0
-> wait until they are up and in -> ramp their weight in steps, active+clean with a steady map between
steps, stopping on a down OSD or PGs that stay inactive -> NetBox: OSD ids on the device and a journal
entry -> report.
"""

from __future__ import annotations

from typing import Annotated

import pynetbox
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from atlas.ceph.cluster import Ceph
from atlas.core.model import Device, Role
from atlas.core.run import Events, Target
from atlas.core.settings import load_settings
from atlas.prefect.forms import OPTIONAL_NAME_PATTERN, DryRun, Names, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.progress import Progress, RunEvents
from atlas.prefect.reports import publish
from atlas.prefect.sources import cluster, run_name, sources
from atlas.runbooks import ceph_enroll
from atlas.runbooks.ceph_enroll import EnrollRefused as EnrollRefused
from atlas.runbooks.ceph_enroll import EnrollReport as EnrollReport
from atlas.runbooks.ceph_enroll import HostPlan
from atlas.secrets import Vault
from atlas.sot.read import NotInNetBox, rack_members, read_devices


@task(name="read hosts from NetBox", cache_policy=NO_CACHE)
def read_hosts(
    names: list[str], rack: str | None
) -> tuple[pynetbox.api, Vault, list[str], dict[str, Device]]:
    """The hosts named and the storage servers of the rack, as NetBox has them."""
    nb, vault = sources()
    try:
        wanted = sorted(set(names) | set(rack_members(nb, rack, Role.STORAGE) if rack else []))
    except NotInNetBox as e:
        raise EnrollRefused([str(e)]) from None
    return nb, vault, wanted, {d.name: d for d in read_devices(nb, wanted)} if wanted else {}


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(names: list[str], found: dict[str, Device], ceph: Ceph, vault: Vault) -> list[Target]:
    return ceph_enroll.preflight(names, found, ceph, vault)


@task(name="plan", cache_policy=NO_CACHE)
def plan(ceph: Ceph, hosts: list[Target], events: Events) -> list[HostPlan]:
    plans = ceph_enroll.plan(ceph, [t.device for t in hosts])
    for line in ceph_enroll.plan_lines(plans, {t.name: t.device for t in hosts}):
        events.info(line)
    return plans


@task(name="dry run: what would be done", cache_policy=NO_CACHE)
def planned(ceph: Ceph, plans: list[HostPlan], target_weight: float, step: float) -> EnrollReport:
    return ceph_enroll.planned(ceph, plans, target_weight, step)


@task(name="create OSDs at weight 0 (ceph_osd role)", cache_policy=NO_CACHE)
def create(ceph: Ceph, hosts: list[Target], events: Events) -> list[str]:
    results = ceph_enroll.create_osds(ceph, hosts, events, load_settings().ceph_allow_loop_devices)
    if results.failed:
        raise ceph_enroll.EnrollFailed(ceph_enroll.failed_creation(results))
    return [r.target for r in results.changed]


@task(name="wait until the OSDs are up and in", cache_policy=NO_CACHE)
def wait_up(ceph: Ceph, hosts: list[Target]) -> dict[int, str]:
    return ceph_enroll.wait_osds_up(ceph, [t.device for t in hosts])


@task(name="ramp CRUSH weight", cache_policy=NO_CACHE)
def ramp(
    ceph: Ceph, placed: dict[int, str], target_weight: float, step: float, events: Events
) -> list[float]:
    return ceph_enroll.ramp(ceph, ceph_enroll.target_weights(ceph, placed, target_weight), step, events)


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(
    nb: pynetbox.api,
    ceph: Ceph,
    hosts: list[Target],
    placed: dict[int, str],
    created: list[str],
    steps: list[float],
) -> EnrollReport:
    devices = [t.device for t in hosts]
    report = ceph_enroll.enrolled(ceph, devices, placed, created, steps)
    ceph_enroll.record(nb, devices, report, run_name())
    return report


@flow(name="ceph-osd-enroll")
@form
def ceph_osd_enroll(
    hosts: Annotated[
        Names,
        Field(description="Storage servers, by NetBox name"),
    ] = [],  # noqa: B006 - Prefect forms need a literal default; the list is never mutated
    rack: Annotated[
        str, Field(pattern=OPTIONAL_NAME_PATTERN, description="And/or every storage server of this rack")
    ] = "",
    target_weight: Annotated[
        float,
        Field(ge=0, le=1000, description="CRUSH weight of each new OSD at the end; 0: its size in TiB"),
    ] = 0.0,
    step: Annotated[
        float, Field(gt=0, le=1, description="Each ramp step, as a fraction of the target")
    ] = 0.25,
    dry_run: DryRun = True,
) -> EnrollReport:
    ceph = cluster()
    nb, vault, names, found = read_hosts(hosts, rack or None)
    chosen = preflight(names, found, ceph, vault)
    plans = plan(ceph, chosen, RunEvents())
    if dry_run:
        report = planned(ceph, plans, target_weight, step)
        publish(*ceph_enroll.artifact(report))
        return report
    # created and up, each ramp step clean, recorded
    progress = Progress("ceph-osd-enroll", total=2 + len(ceph_enroll.ramp_steps(0.0, 1.0, step)))
    events = RunEvents(progress)
    with exclusive(*rack_limits(t.device for t in chosen)):
        created = create(ceph, chosen, events)
        placed = wait_up(ceph, chosen)
        events.step_done(f"{len(placed)} OSD(s) up")
        steps = ramp(ceph, placed, target_weight, step, events)
        report = record(nb, ceph, chosen, placed, created, steps)
    progress.end("OSD ids recorded in NetBox")
    publish(*ceph_enroll.artifact(report))
    return report
