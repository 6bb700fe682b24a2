"""Enrollment decisions on plain data: who may be enrolled, when the cluster may take OSDs, the ramp."""

from __future__ import annotations

import pytest

from atlas.ceph.cluster import PgSummary, crush_location, osd_host_conf
from atlas.core.model import Device, DeviceStatus
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.ceph_enroll import (
    EPSILON,
    EnrollReport,
    HostPlan,
    artifact,
    cluster_problems,
    host_problems,
    plan_lines,
    ramp_steps,
)
from atlas.sot.topology import load_topology

CLEAN = PgSummary(states={"active+clean": 17}, total=17)


def devices() -> dict[str, Device]:
    """The default lab's devices, each disk at the path the lab records in NetBox when it boots."""
    return {
        d.name: d.model_copy(update={"disk_paths": {disk: f"/dev/loop{i}" for i, disk in enumerate(d.disks)}})
        for d in load_topology(DEFAULT_TOPOLOGY).all_devices()
    }


def test_only_active_storage_servers_known_to_netbox_are_enrolled() -> None:
    found = devices()
    assert host_problems(["fra1-r01-sto1"], found) == []
    problems = host_problems(["fra1-r02-sto1", "fra1-r01-cmp1", "ghost", "bad;name"], found)
    assert problems[0].startswith("host 'bad;name'")
    assert "fra1-r02-sto1: planned in NetBox; bring its rack up first" in problems
    assert "fra1-r01-cmp1: a compute server, not a storage server" in problems
    assert "ghost: not in NetBox" in problems
    assert host_problems([], found) == ["no host given"]
    diskless = found | {"fra1-r01-sto1": found["fra1-r01-sto1"].model_copy(update={"disks": ()})}
    assert host_problems(["fra1-r01-sto1"], diskless) == [
        "fra1-r01-sto1: no disks in NetBox (inventory items of role disk)"
    ]


@pytest.mark.parametrize(
    ("disks", "paths", "problem"),
    [
        (("disk1",), {}, "disk disk1 has no device path in NetBox (custom field device_path)"),
        (("disk1",), {"disk1": "sdb"}, "disk disk1: device path 'sdb' is not a device path under /dev"),
        (("disk1",), {"disk1": "/dev/../etc/passwd"}, "'/dev/../etc/passwd' is not a device path under /dev"),
        (("disk1",), {"disk1": "/dev/sdb; reboot"}, "'/dev/sdb; reboot' is not a device path under /dev"),
        (("disk1",), {"disk1": "/dev/sdb\nreboot"}, "is not a device path under /dev"),
        (
            ("disk1", "disk2"),
            {"disk1": "/dev/sdb", "disk2": "/dev/sdb"},
            "several disks in NetBox name the same device: /dev/sdb",
        ),
    ],
)
def test_every_disk_needs_a_safe_device_path_of_its_own(
    disks: tuple[str, ...], paths: dict[str, str], problem: str
) -> None:
    found = devices()
    host = found["fra1-r01-sto1"].model_copy(update={"disks": disks, "disk_paths": paths})
    problems = host_problems([host.name], found | {host.name: host})
    assert len(problems) == 1 and problem in problems[0] and problems[0].startswith("fra1-r01-sto1: ")


def test_disks_at_safe_device_paths_pass() -> None:
    found = devices()
    paths = {"disk1": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "disk2": "/dev/nvme0n1"}
    host = found["fra1-r01-sto1"].model_copy(update={"disks": ("disk1", "disk2"), "disk_paths": paths})
    assert host_problems([host.name], found | {host.name: host}) == []


def test_a_busy_or_held_cluster_takes_no_new_osds() -> None:
    assert cluster_problems("HEALTH_OK", [], CLEAN, {"sortbitwise"}) == []
    assert cluster_problems("HEALTH_WARN", ["OSD_FLAGS: x"], CLEAN, set()) == []
    busy = PgSummary(states={"active+clean": 10, "active+recovering+degraded": 7}, total=17)
    problems = cluster_problems("HEALTH_ERR", ["PG_DAMAGED: 1 pg"], busy, {"noout", "norebalance"})
    assert len(problems) == 3
    assert "7 active+recovering+degraded" in problems[1] and "noout, norebalance" in problems[2]


@pytest.mark.parametrize(
    ("current", "target", "step", "expected"),
    [
        (0.0, 1.0, 0.25, [0.25, 0.5, 0.75, 1.0]),
        (0.5, 1.0, 0.25, [0.75, 1.0]),  # resumed after an interruption: the same grid
        (0.6, 1.0, 0.25, [0.75, 1.0]),
        (1.0, 1.0, 0.25, []),  # at target: nothing to do
        (1.0 - EPSILON / 2, 1.0, 0.25, []),  # CRUSH's fixed point rounds below target
        (0.0, 0.9, 1.0, [0.9]),
        (2.0, 1.0, 0.25, [1.0]),  # above target: straight down
        (0.0, 1.0, 0.3, [0.25, 0.5, 0.75, 1.0]),  # a step that does not divide 1 rounds to more steps
    ],
)
def test_the_ramp_goes_through_a_fixed_grid(
    current: float, target: float, step: float, expected: list[float]
) -> None:
    assert ramp_steps(current, target, step) == expected


def test_a_hosts_ceph_conf_places_its_osds_where_netbox_has_it() -> None:
    host = devices()["fra1-r02-sto1"]
    minimal = "# minimal\n[global]\n\tfsid = f\n\tmon_host = [v2:198.18.0.1:28009/0]\n"
    assert host.mgmt_address is not None
    conf = osd_host_conf(minimal, host, str(host.mgmt_address.ip), initial_weight=0)
    assert crush_location(host) == "root=default datacenter=fra1 rack=fra1-r02 host=fra1-r02-sto1"
    assert f"crush_location = {crush_location(host)}" in conf
    assert "osd_crush_initial_weight = 0" in conf
    assert f"public_addr = {host.mgmt_address.ip}" in conf
    assert "initial_weight" not in osd_host_conf(
        minimal, host.model_copy(update={"status": DeviceStatus.ACTIVE}), str(host.mgmt_address.ip), None
    )


def test_the_plan_is_logged_host_by_host_with_its_disks() -> None:
    host = devices()["fra1-r01-sto1"]
    plans = [HostPlan(host=host.name, osds={3: 0.5}, to_create=len(host.disks) - 1)]
    [line] = plan_lines(plans, {host.name: host})
    assert line.startswith("fra1-r01-sto1: 1 OSD(s) now {3: 0.5}, ") and "/dev/loop0" in line


def test_a_run_that_changed_nothing_says_so_and_lists_every_osd() -> None:
    report = EnrollReport(dry_run=False, osds={"fra1-r01-sto1": [3]}, created=[], steps=[], weights={3: 1.0})
    key, title, summary, table = artifact(report)
    assert (key, title) == ("ceph-osd-enroll-fra1-r01-sto1", "Ceph OSD enrollment")
    assert summary[-1] == "no change: every OSD exists at its target weight"
    assert table == [{"host": "fra1-r01-sto1", "osd": "osd.3", "weight": "1.000000"}]
    planned = report.model_copy(update={"dry_run": True, "created": ["fra1-r01-sto1"], "steps": [0.5, 1.0]})
    assert artifact(planned)[2][1:] == ["OSDs to create on: fra1-r01-sto1", "ramp steps: 50%, 100%"]
