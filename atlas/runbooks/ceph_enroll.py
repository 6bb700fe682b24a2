"""Enrolling storage servers as Ceph OSD hosts without putting data at risk.

New OSDs join CRUSH at weight 0 under their host/rack/datacenter bucket (from NetBox), then their
weight is raised in steps; after each step every PG must be active+clean with a steady OSD map before
the next, and a down OSD or PGs that stay inactive stop the ramp. Everything reads the current state
first, so a re-run (or a run after one killed mid-ramp) continues where things are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pynetbox
from pydantic import BaseModel

from atlas.ceph.cluster import Ceph, CephError, PgSummary, osd_host_conf
from atlas.core.errors import Failed, Refused
from atlas.core.model import Credential, Device, DeviceStatus, Role
from atlas.core.run import Events, Results, Target, poll_until
from atlas.core.safety import device_path_problem, name_problem
from atlas.hosts.runner import Host, run_playbook
from atlas.hosts.services import service_problems
from atlas.net.sessions import wait_reachable
from atlas.runbooks.site import vault_targets
from atlas.secrets import Vault
from atlas.sot.schema import DISK_PATH_FIELD, OSD_IDS_FIELD
from atlas.sot.write import add_journal_entries, set_devices_custom_fields

PLAYBOOK = "ceph-osd.yml"
# Set by hand for maintenance; a new OSD must not join a cluster that is held like this.
HOLDING_FLAGS = {"noout", "noin", "noup", "nodown", "norebalance", "nobackfill", "norecover", "pause"}
INACTIVE_GRACE = 30.0  # PGs peer for a moment after a reweight; longer than this is a regression
EPSILON = 2 / 65536  # CRUSH keeps weights in 16.16 fixed point: closer than this is equal
SETTLE_TIMEOUT = 90.0  # seconds a busy cluster gets to become clean before the run is refused


class EnrollRefused(Refused):
    headline = "{n} problem(s); no OSD was created or changed"


class EnrollFailed(Failed):
    pass


@dataclass(frozen=True)
class HostPlan:
    host: str
    osds: dict[int, float]  # existing OSD id -> current CRUSH weight
    to_create: int


def host_problems(names: list[str], found: dict[str, Device]) -> list[str]:
    problems = [p for n in names if (p := name_problem("host", n))]
    if not names:
        problems.append("no host given")
    for name in names:
        d = found.get(name)
        if d is None:
            problems.append(f"{name}: not in NetBox")
        elif d.role != Role.STORAGE:
            problems.append(f"{name}: a {d.role.value} server, not a storage server")
        else:
            if d.status != DeviceStatus.ACTIVE:
                problems.append(f"{name}: {d.status.value} in NetBox; bring its rack up first")
            if d.mgmt_address is None:
                problems.append(f"{name}: no management address in NetBox")
            if d.rack is None:
                problems.append(f"{name}: in no rack in NetBox (its CRUSH location needs one)")
            if not d.disks:
                problems.append(f"{name}: no disks in NetBox (inventory items of role disk)")
            problems += disk_problems(d) + service_problems([d])
    return problems


def disk_problems(host: Device) -> list[str]:
    """Each disk needs its block device on the host, recorded in NetBox, and one disk per device."""
    problems = []
    for disk in host.disks:
        path = host.disk_paths.get(disk)
        if path is None:
            problems.append(
                f"{host.name}: disk {disk} has no device path in NetBox (custom field {DISK_PATH_FIELD})"
            )
        elif problem := device_path_problem(f"{host.name}: disk {disk}: device path", path):
            problems.append(problem)
    paths = [host.disk_paths[d] for d in host.disks if d in host.disk_paths]
    if twice := sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(f"{host.name}: several disks in NetBox name the same device: {', '.join(twice)}")
    return problems


def cluster_problems(health: str, checks: list[str], pgs: PgSummary, flags: set[str]) -> list[str]:
    problems = []
    if health == "HEALTH_ERR":
        problems.append("cluster is HEALTH_ERR: " + "; ".join(checks))
    if not pgs.clean:
        problems.append(f"PGs are not all active+clean (recovery or backfill in progress?): {pgs}")
    held = sorted(flags & HOLDING_FLAGS)
    if held:
        problems.append(f"cluster flags set: {', '.join(held)}")
    return problems


def ramp_steps(current: float, target: float, step: float) -> list[float]:
    """The weights still to go through, on a fixed grid of `step` fractions of the target, so a
    re-run after an interruption lands on the same steps as the first run."""
    if target < current - EPSILON:
        return [target]
    n = max(1, math.ceil(1 / step - EPSILON))
    return [round(target * k / n, 6) for k in range(1, n + 1) if target * k / n > current + EPSILON]


def fractions_to_go(current: dict[int, float], targets: dict[int, float], step: float) -> list[float]:
    """The steps (fractions of each OSD's target) still ahead of these OSDs, in order."""
    return sorted(
        {round(w / targets[i], 6) for i, now in current.items() for w in ramp_steps(now, targets[i], step)}
    )


def preflight(names: list[str], found: dict[str, Device], ceph: Ceph, vault: Vault) -> list[Target]:
    """The hosts, as Targets, once every one is a storage server fit to enroll, answers SSH and the
    cluster is clean and not held; EnrollRefused naming every problem otherwise."""
    problems = host_problems(names, found)
    servers = [found[n] for n in names if n in found and found[n].role.is_server and found[n].mgmt_address]
    hosts = vault_targets(vault, servers)
    problems += wait_reachable(hosts, timeout=20).values()
    # a ramp step that an interrupted run left may still be settling: give it a moment; if it does
    # not settle, cluster_problems below names what is wrong
    with suppress(CephError):
        ceph.wait_clean(timeout=SETTLE_TIMEOUT, stable=2)
    health, checks = ceph.health()
    problems += cluster_problems(health, checks, ceph.pgs(), ceph.flags())
    if problems:
        raise EnrollRefused(problems)
    return hosts


def plan(ceph: Ceph, hosts: Sequence[Device]) -> list[HostPlan]:
    osds = ceph.osds()
    plans = []
    for h in hosts:
        mine = {i: o["weight"] for i, o in osds.items() if o["host"] == h.name}
        plans.append(HostPlan(host=h.name, osds=mine, to_create=max(0, len(h.disks) - len(mine))))
    return plans


def plan_lines(plans: Iterable[HostPlan], hosts: Mapping[str, Device]) -> list[str]:
    """What the plan is, host by host, for the run's log."""
    return [
        f"{p.host}: {len(p.osds)} OSD(s) now {p.osds}, {p.to_create} to create; "
        f"disks {', '.join(hosts[p.host].disk_paths.values())}"
        for p in plans
    ]


def create_osds(
    ceph: Ceph, hosts: Sequence[Target], events: Events, allow_loop_devices: bool = False
) -> Results:
    """Through the ceph_osd role on each host: an OSD on each disk that has none (joining at weight 0),
    the stopped ones started; a disk holding anything else stops that host before any change. One
    playbook run per credential (one per site)."""
    minimal, keyring = ceph.minimal_conf(), ceph.keyring("client.bootstrap-osd")
    groups: dict[Credential, list[Host]] = {}
    for t in hosts:
        variables = {
            "ceph_conf": osd_host_conf(minimal, t.device, t.address, initial_weight=0),
            "ceph_bootstrap_keyring": keyring,
            "ceph_osd_disks": [t.device.disk_paths[d] for d in t.device.disks],  # preflight: all present
            "ceph_osd_allow_loop_devices": allow_loop_devices,
        }
        groups.setdefault(t.credential, []).append(Host(name=t.name, address=t.address, variables=variables))
    results = Results()
    for cred, inventory in groups.items():
        results += run_playbook(PLAYBOOK, inventory, cred, on_event=events.info)
    return results


def failed_creation(results: Results) -> str:
    return "; ".join(f"{r.target}: {r.detail}" for r in results.failed)


def wait_osds_up(ceph: Ceph, hosts: Sequence[Device], timeout: float = 120.0) -> dict[int, str]:
    """Every host's OSDs up and in; their ids and hosts."""
    wanted = {h.name: len(h.disks) for h in hosts}

    def per_host(osds: dict[int, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        return {n: [o for o in osds.values() if o["host"] == n] for n in wanted}

    def all_up(osds: dict[int, dict[str, Any]]) -> bool:
        return all(
            len(v) >= wanted[n] and all(o["up"] and o["in"] for o in v) for n, v in per_host(osds).items()
        )

    osds = poll_until(
        lambda: {i: o for i, o in ceph.osds().items() if o["host"] in wanted}, all_up, timeout=timeout
    )
    if not all_up(osds):
        missing = sorted(n for n, v in per_host(osds).items() if not v or not all(o["up"] for o in v))
        raise EnrollFailed(f"OSDs not up and in within {timeout:.0f} s on: {', '.join(missing)}")
    return {i: str(o["host"]) for i, o in osds.items()}


def full_weight(ceph: Ceph, osd_id: int) -> float:
    """The weight Ceph gives a device of its size: its capacity in TiB."""
    size = int(ceph.call("osd", "metadata", str(osd_id))["bluestore_bdev_size"])
    return round(size / 2**40, 6)


def regression(ceph: Ceph) -> Callable[[], str | None]:
    """Asked while waiting for clean: a reason to stop ramping, or None."""
    inactive_since: float | None = None

    def check() -> str | None:
        nonlocal inactive_since
        down = sorted(i for i, o in ceph.osds().items() if not o["up"])
        pgs = ceph.pgs()
        if down:
            return f"OSD(s) {', '.join(map(str, down))} down; cluster: {pgs}"
        if not pgs.inactive:
            inactive_since = None
            return None
        inactive_since = inactive_since or time.monotonic()
        if time.monotonic() - inactive_since > INACTIVE_GRACE:
            return f"{pgs.inactive} PG(s) inactive for over {INACTIVE_GRACE:.0f} s: {pgs}"
        return None

    return check


def target_weights(ceph: Ceph, osd_ids: Iterable[int], target_weight: float) -> dict[int, float]:
    """Each OSD's weight at the end: `target_weight`, or (0) its size in TiB."""
    return {i: target_weight or full_weight(ceph, i) for i in osd_ids}


def ramp(
    ceph: Ceph,
    targets: dict[int, float],
    step: float,
    events: Events,
    settle: float = 3.0,
    timeout: float = 600.0,
) -> list[float]:
    """Raises every OSD to its target in steps, waiting for clean between them; the weights set.
    Each fraction the cluster is clean at is a step done."""
    osds = ceph.osds()
    done: list[float] = []
    for fraction in fractions_to_go({i: osds[i]["weight"] for i in targets}, targets, step):
        for osd_id, target in targets.items():
            weight = round(target * fraction, 6)
            if weight > osds[osd_id]["weight"] + EPSILON:
                ceph.crush_reweight(osd_id, weight)
        events.info(f"CRUSH weight at {fraction:.0%} of target; waiting for active+clean")
        try:
            ceph.wait_clean(timeout=timeout, stable=settle, abort=regression(ceph))
        except CephError as e:
            raise EnrollFailed(f"ramp stopped at {fraction:.0%} of the target weight: {e}") from None
        done.append(fraction)
        events.step_done(f"CRUSH weight at {fraction:.0%}, cluster clean")
    return done


# --- NetBox and the report ------------------------------------------------------------------------
class EnrollReport(BaseModel):
    dry_run: bool
    osds: dict[str, list[int]]  # host -> its OSD ids
    created: list[str]
    steps: list[float]
    weights: dict[int, float]


def planned(ceph: Ceph, plans: list[HostPlan], target_weight: float, step: float) -> EnrollReport:
    """A dry run's report: the OSDs to create and the ramp steps still ahead, nothing changed."""
    current = {i: w for p in plans for i, w in p.osds.items()}
    new = ramp_steps(0.0, 1.0, step) if any(p.to_create for p in plans) else []
    ahead = fractions_to_go(current, target_weights(ceph, current, target_weight), step)
    return EnrollReport(
        dry_run=True,
        osds={p.host: sorted(p.osds) for p in plans},
        created=[p.host for p in plans if p.to_create],
        steps=sorted(set(new) | set(ahead)),
        weights=current,
    )


def enrolled(
    ceph: Ceph, hosts: Sequence[Device], placed: dict[int, str], created: list[str], steps: list[float]
) -> EnrollReport:
    """The report of a run that changed the cluster: every host's OSDs at their weights now."""
    weights = {i: o["weight"] for i, o in ceph.osds().items() if i in placed}
    osds = {h.name: sorted(i for i, host in placed.items() if host == h.name) for h in hosts}
    return EnrollReport(dry_run=False, osds=osds, created=created, steps=steps, weights=weights)


def record(nb: pynetbox.api, hosts: Sequence[Device], report: EnrollReport, run: str) -> list[str]:
    """Each host's OSD ids in its custom field, all in one bulk update, and a journal entry on the
    hosts whose ids changed (one read, one write); those hosts."""
    values = [(h, {OSD_IDS_FIELD: ",".join(map(str, sorted(report.osds[h.name])))}) for h in hosts]
    changed = {c.target for c in set_devices_custom_fields(nb, sorted(values, key=lambda v: v[0].name))}

    def listing(host: str) -> str:
        return ", ".join(f"osd.{i} at weight {report.weights[i]:.6f}" for i in sorted(report.osds[host]))

    entries = [
        (h, f"ceph-osd-enroll {run}: {listing(h.name)}")
        for h in sorted(hosts, key=lambda h: h.name)
        if h.name in changed
    ]
    add_journal_entries(nb, entries, kind="success")
    return sorted(changed)


def artifact(report: EnrollReport) -> tuple[str, str, list[str], list[dict[str, str]]]:
    """The report as the run's artifact (atlas.prefect.reports.publish): key, title, summary, rows."""
    changed = bool(report.created or report.steps)
    return (
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
