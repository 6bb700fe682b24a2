"""ceph-osd-enroll end to end against the lab's real Ceph: OSDs created on the storage server by the
ceph_osd role over Ansible, CRUSH weight ramped with real PG movement. In file order, on fra1-r02's
storage server, brought up first."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pynetbox
import pytest

from atlas.ceph.cluster import Ceph
from atlas.core.model import Device
from atlas.lab.ceph import poll_osds_up
from atlas.lab.lab import Lab
from atlas.prefect.locks import rack_limit_name
from atlas.runbooks.ceph_enroll import EnrollFailed
from atlas.sot.read import read_devices
from flows.ceph_enroll import EnrollRefused, ceph_osd_enroll
from flows.rack_bringup import rack_bringup
from tests.e2e.runs import held_back

pytestmark = pytest.mark.usefixtures("flow_env")
ROOT = Path(__file__).resolve().parents[2]
HOST = "fra1-r02-sto1"


@pytest.fixture(scope="module", autouse=True)
def storage_rack_up(lab: Lab) -> None:
    lab.reset()
    for rack in ("fra1-r01", "fra1-r02"):
        assert rack_bringup(site="fra1", rack=rack, dry_run=False).failed == 0


@pytest.fixture(scope="module")
def ceph(lab: Lab) -> Ceph:
    return lab.ceph.ceph


@pytest.fixture(scope="module")
def host(nb: pynetbox.api) -> Device:
    """As NetBox has it after the reset: its disks' paths are those of the lab's new loop devices."""
    [device] = read_devices(nb, [HOST])
    return device


def osds_on(ceph: Ceph, name: str) -> dict[int, float]:
    return {i: o["weight"] for i, o in ceph.osds().items() if o["host"] == name}


def test_bad_hosts_are_refused_before_any_change(ceph: Ceph, nb: pynetbox.api) -> None:
    before = ceph.osds()
    with pytest.raises(EnrollRefused) as info:
        ceph_osd_enroll(hosts=["fra1-r01-cmp1", "ghost", "ams1-r02-sto1"], dry_run=False)
    assert len(info.value.problems) == 3
    assert "not a storage server" in str(info.value) and "ghost: not in NetBox" in str(info.value)
    with pytest.raises(EnrollRefused, match="'fra1-r99'"):
        ceph_osd_enroll(rack="fra1-r99", dry_run=False)
    disk = nb.dcim.inventory_items.get(device="fra1-r01-sto1", name="disk1")
    device, role, path = disk.device.id, disk.role.id, disk.custom_fields["device_path"]
    disk.custom_fields = {"device_path": f"{path}; reboot"}  # a path typed with a shell command in it
    disk.save()
    with pytest.raises(
        EnrollRefused, match=r"fra1-r01-sto1: disk disk1: device path .* is not a device path"
    ):
        ceph_osd_enroll(hosts=["fra1-r01-sto1"], dry_run=False)
    disk.delete()  # a storage server whose disks NetBox does not list
    try:
        with pytest.raises(EnrollRefused, match="fra1-r01-sto1: no disks in NetBox"):
            ceph_osd_enroll(hosts=["fra1-r01-sto1"], dry_run=False)
    finally:
        nb.dcim.inventory_items.create(
            {"device": device, "name": "disk1", "role": role, "custom_fields": {"device_path": path}}
        )
    assert ceph.osds() == before


def test_the_lab_never_creates_an_osd_itself_after_its_first_boot(lab: Lab, ceph: Ceph) -> None:
    """fra1-r02 is active now (its bring-up): a `lab up` leaves its storage server without OSDs,
    for ceph-osd-enroll to add with its ramp."""
    before = ceph.osds()
    lab.up()
    assert ceph.osds() == before and osds_on(ceph, HOST) == {}


def test_a_dry_run_plans_and_creates_nothing(ceph: Ceph) -> None:
    before = ceph.osds()
    report = ceph_osd_enroll(rack="fra1-r02", dry_run=True)  # the rack's storage servers: HOST
    assert (
        report.dry_run
        and list(report.osds) == [HOST]
        and report.created == [HOST]
        and report.steps == [0.25, 0.5, 0.75, 1.0]
    )
    assert ceph.osds() == before and osds_on(ceph, HOST) == {}


def test_a_disk_that_holds_data_is_never_touched(ceph: Ceph, host: Device) -> None:
    disk = host.disk_paths["disk1"]
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "someones-data", disk], check=True)
    ids_before = ceph.call("osd", "ls")
    try:
        with pytest.raises(
            EnrollFailed, match=rf"{HOST}: .*{disk}: holds ext4, not an empty disk; nothing was changed"
        ):
            ceph_osd_enroll(hosts=[HOST], dry_run=False)
        assert ceph.call("osd", "ls") == ids_before  # not even an OSD id was taken
        label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", disk], capture_output=True, text=True)
        assert label.stdout.strip() == "someones-data"
    finally:
        subprocess.run(["wipefs", "--all", "--quiet", disk], check=True)


def test_an_osd_that_goes_down_mid_ramp_stops_it(lab: Lab, ceph: Ceph, host: Device) -> None:
    stopped: list[int] = []

    def stop_the_new_osd_once_data_moves() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not stopped:
            mine = osds_on(ceph, HOST)
            if mine and max(mine.values()) > 0:
                osd_id = next(iter(mine))
                lab.ceph.stop_osd(host, osd_id)
                stopped.append(osd_id)
            time.sleep(0.3)

    saboteur = threading.Thread(target=stop_the_new_osd_once_data_moves)
    saboteur.start()
    try:
        with pytest.raises(EnrollFailed, match="down"):
            ceph_osd_enroll(hosts=[HOST], dry_run=False)
    finally:
        saboteur.join()
    [osd_id] = stopped
    weight = osds_on(ceph, HOST)[osd_id]
    time.sleep(3)
    assert osds_on(ceph, HOST)[osd_id] == weight  # nothing further changed
    assert 0 < weight < 0.0038  # stopped below the target (the OSD's size, 4 GiB in TiB)


def test_a_run_killed_mid_ramp_is_completed_by_a_rerun(
    lab: Lab, ceph: Ceph, nb: pynetbox.api, host: Device
) -> None:
    lab.ceph.create_osd(host)  # the cause of the last failure, fixed
    ceph.wait_clean(timeout=120)
    code = f"from flows.ceph_enroll import ceph_osd_enroll; ceph_osd_enroll(hosts=[{HOST!r}], dry_run=False)"
    env = os.environ | {"PREFECT_API_URL": lab.cfg.prefect_url}
    start = max(osds_on(ceph, HOST).values())
    run = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_at = None
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            weight = max(osds_on(ceph, HOST).values())
            if weight > start + 1e-4:  # the ramp moved on from where the last run stopped
                run.kill()
                killed_at = weight
                break
            time.sleep(0.3)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
    assert killed_at is not None, "the run ended before it could be killed mid-ramp"
    report = ceph_osd_enroll(hosts=[HOST], dry_run=False)
    assert report.created == [] and len(report.osds[HOST]) == 1  # no second OSD
    assert report.steps[-1] == 1.0 and 0.25 not in report.steps  # continued, not started over
    assert ceph.health()[0] == "HEALTH_OK" and ceph.pgs().clean
    [osd_id] = report.osds[HOST]
    osd = ceph.osds()[osd_id]
    assert osd["up"] and osd["in"] and abs(osd["weight"] - 4 / 1024) < 2 / 65536  # its size in TiB
    assert nb.dcim.devices.get(name=HOST).custom_fields["ceph_osd_ids"] == str(osd_id)


def test_a_rerun_changes_nothing(ceph: Ceph) -> None:
    before = ceph.osds()
    report = ceph_osd_enroll(hosts=[HOST], dry_run=False)
    assert report.created == [] and report.steps == []
    assert ceph.osds() == before


def test_a_rebooted_storage_server_brings_its_osds_back_by_itself(lab: Lab, ceph: Ceph) -> None:
    before = osds_on(ceph, HOST)
    assert before
    lab.reboot(HOST)
    # its units activate the OSD from its disk and start it: nobody enrolls anything
    poll_osds_up(ceph, timeout=120)
    ceph.wait_clean(timeout=120)
    assert ceph.health()[0] == "HEALTH_OK"
    assert osds_on(ceph, HOST) == before  # the same OSDs, at the same weights
    assert all(ceph.osds()[i]["up"] and ceph.osds()[i]["in"] for i in before)
    report = ceph_osd_enroll(hosts=[HOST], dry_run=False)
    assert report.created == [] and report.steps == []


def test_an_enrollment_waits_while_another_run_changes_its_rack(ceph: Ceph, host: Device) -> None:
    assert host.rack is not None
    held_back(
        f"from flows.ceph_enroll import ceph_osd_enroll; ceph_osd_enroll(hosts=[{HOST!r}], dry_run=False)",
        rack_limit_name(host.site, host.rack),
        ceph.osds,
    )
