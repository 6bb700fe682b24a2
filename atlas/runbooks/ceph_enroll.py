"""Enrolling storage servers as Ceph OSD hosts without putting data at risk.

New OSDs join CRUSH at weight 0 under their host/rack/datacenter bucket (from NetBox), then their
weight is raised in steps; after each step every PG must be active+clean with a steady OSD map before
the next, and a down OSD or PGs that stay inactive stop the ramp. Everything reads the current state
first, so a re-run (or a run after one killed mid-ramp) continues where things are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from atlas.ceph.cluster import Ceph, CephError, PgSummary, osd_host_conf
from atlas.core.errors import Failed
from atlas.core.model import Credential, Device, DeviceStatus, Role
from atlas.core.run import Result
from atlas.core.safety import device_path_problem, name_problem
from atlas.hosts.runner import Host, run_playbook
from atlas.sot.schema import DISK_PATH_FIELD

PLAYBOOK = "ceph-osd.yml"
# Set by hand for maintenance; a new OSD must not join a cluster that is held like this.
HOLDING_FLAGS = {"noout", "noin", "noup", "nodown", "norebalance", "nobackfill", "norecover", "pause"}
INACTIVE_GRACE = 30.0  # PGs peer for a moment after a reweight; longer than this is a regression
EPSILON = 2 / 65536  # CRUSH keeps weights in 16.16 fixed point: closer than this is equal

Log = Callable[[str], None]


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
            problems += disk_problems(d)
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


def plan(ceph: Ceph, hosts: list[Device]) -> list[HostPlan]:
    osds = ceph.osds()
    plans = []
    for h in hosts:
        mine = {i: o["weight"] for i, o in osds.items() if o["host"] == h.name}
        plans.append(HostPlan(host=h.name, osds=mine, to_create=max(0, len(h.disks) - len(mine))))
    return plans


def create_osds(
    ceph: Ceph, hosts: list[Device], cred: Credential, log: Log, allow_loop_devices: bool = False
) -> list[Result]:
    """Through the ceph_osd role on each host: an OSD on each disk that has none (joining at weight 0),
    the stopped ones started; a disk holding anything else stops that host before any change."""
    minimal, keyring = ceph.minimal_conf(), ceph.keyring("client.bootstrap-osd")
    inventory = [
        Host(
            name=h.name,
            address=str(h.mgmt_address.ip) if h.mgmt_address else "",
            variables={
                "ceph_conf": osd_host_conf(minimal, h, initial_weight=0),
                "ceph_bootstrap_keyring": keyring,
                "ceph_osd_disks": [h.disk_paths[d] for d in h.disks],  # preflight: all present
                "ceph_osd_allow_loop_devices": allow_loop_devices,
            },
        )
        for h in hosts
    ]
    return run_playbook(PLAYBOOK, inventory, cred, on_event=log)


def wait_osds_up(ceph: Ceph, hosts: list[Device], timeout: float = 120.0) -> dict[int, str]:
    """Every host's OSDs up and in; their ids and hosts."""
    deadline = time.monotonic() + timeout
    wanted = {h.name: len(h.disks) for h in hosts}
    while True:
        osds = {i: o for i, o in ceph.osds().items() if o["host"] in wanted}
        per_host = {n: [o for o in osds.values() if o["host"] == n] for n in wanted}
        if all(len(v) >= wanted[n] and all(o["up"] and o["in"] for o in v) for n, v in per_host.items()):
            return {i: str(o["host"]) for i, o in osds.items()}
        if time.monotonic() > deadline:
            missing = sorted(n for n, v in per_host.items() if not v or not all(o["up"] for o in v))
            raise EnrollFailed(f"OSDs not up and in within {timeout:.0f} s on: {', '.join(missing)}")
        time.sleep(1)


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


def ramp(
    ceph: Ceph,
    targets: dict[int, float],
    step: float,
    log: Log,
    settle: float = 3.0,
    timeout: float = 600.0,
    on_clean: Callable[[float], None] | None = None,
) -> list[float]:
    """Raises every OSD to its target in steps, waiting for clean between them; the weights set.
    `on_clean` hears each fraction once the cluster is clean at it."""
    osds = ceph.osds()
    done: list[float] = []
    for fraction in fractions_to_go({i: osds[i]["weight"] for i in targets}, targets, step):
        for osd_id, target in targets.items():
            weight = round(target * fraction, 6)
            if weight > osds[osd_id]["weight"] + EPSILON:
                ceph.crush_reweight(osd_id, weight)
        log(f"CRUSH weight at {fraction:.0%} of target; waiting for active+clean")
        try:
            ceph.wait_clean(timeout=timeout, stable=settle, abort=regression(ceph))
        except CephError as e:
            raise EnrollFailed(f"ramp stopped at {fraction:.0%} of the target weight: {e}") from None
        done.append(fraction)
        if on_clean is not None:
            on_clean(fraction)
    return done
