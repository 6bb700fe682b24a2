"""One bluestore OSD per data disk, made by ceph-volume (raw mode) on the disks given, activated
without systemd and started here, as the ceph user.

Never touches a disk that holds anything but an OSD of this host's cluster: every disk is checked
first, and one that holds a filesystem, a partition table, LVM or another cluster's OSD stops the run
before any change, with every such disk named. Creates only the missing OSDs and starts only the
stopped ones, so re-running it is always safe. Prints one JSON line: {"changed": ..., "osds": {disk:
id}}. Runs on the host with its own python3 and the standard library only.

    python3 osd-volume.py /dev/sdb /dev/sdc ...
"""

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

OSD_DATA = "/var/lib/ceph/osd/ceph-{}"
PID_FILE = "/run/ceph/ceph-osd.{}.pid"


class Refused(Exception):
    pass


def run(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode not in ok:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise Refused(f"{' '.join(argv)} exited {done.returncode}: {' / '.join(tail)}")
    return done


def device_number(path: str) -> int:
    return Path(path).stat().st_rdev


def osds_on(disks: list[str]) -> dict[int, dict[str, object]]:
    """Device number -> what ceph-volume finds on it (osd_id, ceph_fsid), for the disks given."""
    out = run("ceph-volume", "raw", "list", "--format", "json", *disks).stdout
    found = json.loads(out or "{}")
    return {device_number(str(o["device"])): o for o in found.values()}


def check(disks: list[str], fsid: str) -> tuple[dict[str, int], list[str]]:
    """(disk -> id of the OSD of this cluster on it, disks to prepare); raises naming every disk that
    must not be touched."""
    problems = []
    numbers = {}
    for disk in disks:
        try:
            st = Path(disk).stat()
        except FileNotFoundError:
            problems.append(f"{disk}: no such device")
            continue
        if not stat.S_ISBLK(st.st_mode):
            problems.append(f"{disk}: not a block device")
            continue
        numbers[disk] = st.st_rdev
    if len(set(numbers.values())) < len(numbers):
        problems.append(f"the same device is listed twice: {', '.join(disks)}")
    if problems:
        raise Refused("; ".join(problems))
    on_disk = osds_on(disks)
    ours = {}
    for disk in disks:
        osd = on_disk.get(numbers[disk])
        if osd is not None:
            if osd["ceph_fsid"] != fsid:
                problems.append(f"{disk}: holds osd.{osd['osd_id']} of another cluster ({osd['ceph_fsid']})")
            else:
                ours[disk] = int(str(osd["osd_id"]))
            continue
        # blkid exits 2 when it finds no signature at all: the only disk ceph-volume may write
        probe = run("blkid", "--probe", "--output", "export", disk, ok=(0, 2))
        if probe.returncode == 0:
            found = dict(line.split("=", 1) for line in probe.stdout.split() if "=" in line)
            what = found.get("TYPE") or (
                f"a {found['PTTYPE']} partition table" if "PTTYPE" in found else "data"
            )
            problems.append(f"{disk}: holds {what}, not an empty disk")
    if problems:
        raise Refused("; ".join(problems) + "; nothing was changed")
    return ours, [d for d in disks if d not in ours]


def running(osd_id: int) -> bool:
    try:
        pid = int(Path(PID_FILE.format(osd_id)).read_text())
        return b"ceph-osd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def mounted(path: str) -> bool:
    return any(line.split()[1] == path for line in Path("/proc/self/mounts").read_text().splitlines())


def start(disk: str, osd_id: int) -> None:
    if not mounted(OSD_DATA.format(osd_id)):
        run("ceph-volume", "raw", "activate", "--device", disk, "--no-systemd")
    run("ceph-osd", "-i", str(osd_id), "--setuser", "ceph", "--setgroup", "ceph")
    for _ in range(50):  # the daemon forks; its PID file says it got past start-up
        if running(osd_id):
            return
        time.sleep(0.2)
    raise Refused(f"osd.{osd_id} on {disk} did not start: see /var/log/ceph/ceph-osd.{osd_id}.log")


def main(disks: list[str]) -> dict[str, object]:
    fsid = run("ceph-conf", "--lookup", "fsid").stdout.strip()
    for directory in ("/var/log/ceph", "/run/ceph", "/var/lib/ceph/osd"):
        run("install", "-d", "-o", "ceph", "-g", "ceph", directory)
    ours, to_prepare = check(disks, fsid)
    changed = False
    for disk in to_prepare:
        run("ceph-volume", "raw", "prepare", "--bluestore", "--data", disk)
        changed = True
    if to_prepare:
        new = osds_on(to_prepare)
        ours |= {d: int(str(new[device_number(d)]["osd_id"])) for d in to_prepare}
    for disk, osd_id in sorted(ours.items()):
        if not running(osd_id):
            start(disk, osd_id)
            changed = True
    return {"changed": changed, "osds": ours}


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1:])))
    except Refused as e:
        sys.exit(str(e))
