"""The storage servers' disks: real loop devices, found again by their backing files after the
process that attached them is gone, and given back as they were."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from atlas.lab.config import LabConfig
from atlas.lab.disks import DISK_SIZE, LabDisks


def loop_devices_of(directory: Path) -> dict[str, str]:
    out = subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out or '{"loopdevices": []}')["loopdevices"]
    return {r["name"]: r["back-file"] for r in rows if str(directory) in (r.get("back-file") or "")}


def test_disks_are_attached_once_found_again_and_given_back_as_they_were() -> None:
    cfg = LabConfig(name="adisk", port_base=29300)
    shutil.rmtree(cfg.dir, ignore_errors=True)
    disks = LabDisks(cfg)
    try:
        paths = disks.attach({"fra1-r01-sto1": ["disk1", "disk2"]})
        first, second = paths["fra1-r01-sto1"]["disk1"], paths["fra1-r01-sto1"]["disk2"]
        assert first != second and set(loop_devices_of(cfg.dir)) == {first, second}
        before = Path(first).stat()
        assert int(subprocess.check_output(["blockdev", "--getsize64", first])) == DISK_SIZE
        assert disks.attach({"fra1-r01-sto1": ["disk1", "disk2"]}) == paths  # nothing attached twice
        Path(first).chmod(0o660)  # as ceph-volume hands a disk to the ceph user
        # another process (a later `lab up` or `down`) after the files were removed from under them
        for f in disks.dir.glob("*.img"):
            f.unlink()
        assert LabDisks(cfg).detach_all() == 2
        assert loop_devices_of(cfg.dir) == {}
        after = Path(first).stat()
        assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    finally:
        disks.remove()
        shutil.rmtree(cfg.dir, ignore_errors=True)
    assert loop_devices_of(cfg.dir) == {} and not disks.dir.exists()


def test_a_rebuilt_fabric_finds_its_disks_as_it_left_them() -> None:
    cfg = LabConfig(name="adisk", port_base=29300)
    shutil.rmtree(cfg.dir, ignore_errors=True)
    disks = LabDisks(cfg)
    try:
        [[device]] = [d.values() for d in disks.attach({"fra1-r01-sto1": ["disk1"]}).values()]
        with Path(device).open("r+b") as f:
            f.write(b"an OSD's label")
        disks.detach_all()  # the fabric torn down: a half-dead lab being repaired
        [[device]] = [d.values() for d in disks.attach({"fra1-r01-sto1": ["disk1"]}).values()]
        with Path(device).open("rb") as f:
            assert f.read(14) == b"an OSD's label"
    finally:
        disks.remove()
        shutil.rmtree(cfg.dir, ignore_errors=True)
