"""ceph-osd-enroll: storage servers in NetBox become Ceph OSD hosts, data never at risk.

Runbook: read the hosts from NetBox -> preflight (storage servers, active, reachable; the cluster
clean and not held by flags; every problem named, nothing touched) -> plan (existing OSDs and their
weights; the dry run stops here) -> create the missing OSDs through the ceph_osd role at CRUSH weight 0
-> wait until they are up and in -> ramp their weight in steps, active+clean with a steady map between
steps, stopping on a down OSD or PGs that stay inactive -> NetBox: OSD ids on the device and a journal
entry -> report.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from atlas.ceph.cluster import Ceph, CephError
from atlas.core.errors import Refused
from atlas.core.model import Device, Role
from atlas.core.settings import load_settings
from atlas.prefect.forms import OPTIONAL_NAME_PATTERN, DryRun, Names, form
from atlas.prefect.locks import exclusive, rack_limits
from atlas.prefect.progress import Progress
from atlas.prefect.reports import publish
from atlas.prefect.sources import cluster, run_name, sources
from atlas.runbooks import ceph_enroll
from atlas.runbooks.bringup import wait_reachable
from atlas.sot.read import NotInNetBox, rack_members, read_devices
from atlas.sot.schema import OSD_IDS_FIELD
from atlas.sot.write import add_journal_entry, set_custom_fields

SETTLE_TIMEOUT = 90.0  # seconds a busy cluster gets to become clean before the run is refused


class EnrollRefused(Refused):
    headline = "{n} problem(s); no OSD was created or changed"


class EnrollReport(BaseModel):
    dry_run: bool
    osds: dict[str, list[int]]  # host -> its OSD ids
    created: list[str]
    steps: list[float]
    weights: dict[int, float]


@task(name="read hosts from NetBox", cache_policy=NO_CACHE)
def read_hosts(names: list[str], rack: str | None) -> tuple[Any, Any, list[str], dict[str, Device]]:
    """The hosts named and the storage servers of the rack, as NetBox has them."""
    nb, vault = sources()
    try:
        wanted = sorted(set(names) | set(rack_members(nb, rack, Role.STORAGE) if rack else []))
    except NotInNetBox as e:
        raise EnrollRefused([str(e)]) from None
    return nb, vault, wanted, {d.name: d for d in read_devices(nb, wanted)} if wanted else {}


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(names: list[str], found: dict[str, Device], ceph: Ceph) -> list[Device]:
    problems = ceph_enroll.host_problems(names, found)
    hosts = [found[n] for n in names if n in found]
    problems += wait_reachable(tuple(h for h in hosts if h.role.is_server), timeout=20)
    # a ramp step that an interrupted run left may still be settling: give it a moment; if it does
    # not settle, cluster_problems below names what is wrong
    with suppress(CephError):
        ceph.wait_clean(timeout=SETTLE_TIMEOUT, stable=2)
    health, checks = ceph.health()
    problems += ceph_enroll.cluster_problems(health, checks, ceph.pgs(), ceph.flags())
    if problems:
        raise EnrollRefused(problems)
    return hosts


@task(name="create OSDs at weight 0 (ceph_osd role)", cache_policy=NO_CACHE)
def create(ceph: Ceph, hosts: list[Device], vault: Any) -> list[str]:
    log = get_run_logger()
    results = []
    for site in sorted({h.site for h in hosts}):
        group = [h for h in hosts if h.site == site]
        results += ceph_enroll.create_osds(
            ceph, group, vault.credential(site, "storage"), log.info, load_settings().ceph_allow_loop_devices
        )
    failed = [r for r in results if r.failed]
    if failed:
        raise ceph_enroll.EnrollFailed("; ".join(f"{r.target}: {r.detail}" for r in failed))
    return [r.target for r in results if r.changed]


def targets(ceph: Ceph, osd_ids: Iterable[int], target_weight: float) -> dict[int, float]:
    return {i: target_weight or ceph_enroll.full_weight(ceph, i) for i in osd_ids}


@task(name="ramp CRUSH weight", cache_policy=NO_CACHE)
def ramp(ceph: Ceph, targets: dict[int, float], step: float, progress: Progress) -> list[float]:
    return ceph_enroll.ramp(
        ceph,
        targets,
        step,
        get_run_logger().info,
        on_clean=lambda fraction: progress.finished(f"CRUSH weight at {fraction:.0%}, cluster clean"),
    )


@task(name="record in NetBox", cache_policy=NO_CACHE)
def record(nb: Any, osds: dict[str, list[int]], weights: dict[int, float]) -> list[str]:
    changed = []
    for host, ids in sorted(osds.items()):
        value = ",".join(map(str, sorted(ids)))
        if set_custom_fields(nb, host, {OSD_IDS_FIELD: value}).changed:
            listing = ", ".join(f"osd.{i} at weight {weights[i]:.6f}" for i in sorted(ids))
            add_journal_entry(nb, host, f"ceph-osd-enroll {run_name()}: {listing}", kind="success")
            changed.append(host)
    return changed


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
    log = get_run_logger()
    ceph = cluster()
    nb, vault, names, found = read_hosts(hosts, rack or None)
    chosen = preflight(names, found, ceph)
    plans = ceph_enroll.plan(ceph, chosen)
    for p in plans:
        disks = ", ".join(found[p.host].disk_paths.values())
        log.info(
            "%s: %d OSD(s) now %s, %d to create; disks %s", p.host, len(p.osds), p.osds, p.to_create, disks
        )
    if dry_run:
        current = {i: w for p in plans for i, w in p.osds.items()}
        new = ceph_enroll.ramp_steps(0.0, 1.0, step) if any(p.to_create for p in plans) else []
        ahead = ceph_enroll.fractions_to_go(current, targets(ceph, current, target_weight), step)
        report = EnrollReport(
            dry_run=True,
            osds={p.host: sorted(p.osds) for p in plans},
            created=[p.host for p in plans if p.to_create],
            steps=sorted(set(new) | set(ahead)),
            weights=current,
        )
        publish_report(report)
        return report
    # created and up, each ramp step clean, recorded
    progress = Progress("ceph-osd-enroll", total=2 + len(ceph_enroll.ramp_steps(0.0, 1.0, step)))
    with exclusive(*rack_limits(chosen)):
        created = create(ceph, chosen, vault)
        placed = ceph_enroll.wait_osds_up(ceph, chosen)
        progress.finished(f"{len(placed)} OSD(s) up")
        steps = ramp(ceph, targets(ceph, placed, target_weight), step, progress)
        weights = {i: o["weight"] for i, o in ceph.osds().items() if i in placed}
        osds = {h.name: sorted(i for i, host in placed.items() if host == h.name) for h in chosen}
        record(nb, osds, weights)
    progress.end("OSD ids recorded in NetBox")
    report = EnrollReport(dry_run=False, osds=osds, created=created, steps=steps, weights=weights)
    publish_report(report)
    return report


def publish_report(report: EnrollReport) -> None:
    changed = bool(report.created or report.steps)
    publish(
        "ceph-osd-enroll-" + "-".join(sorted(report.osds)),
        "Ceph OSD enrollment" + (" (dry run: plan)" if report.dry_run else ""),
        [
            f"hosts: {', '.join(sorted(report.osds))}",
            f"OSDs {'to create on' if report.dry_run else 'created on'}: {', '.join(report.created) or 'none'}",
            f"ramp steps: {', '.join(f'{s:.0%}' for s in report.steps) or 'none (at target)'}",
            *(
                ["no change: every OSD exists at its target weight"]
                if not changed and not report.dry_run
                else []
            ),
        ],
        [
            {"host": host, "osd": f"osd.{i}", "weight": f"{report.weights.get(i, 0.0):.6f}"}
            for host, ids in sorted(report.osds.items())
            for i in ids
        ],
    )
