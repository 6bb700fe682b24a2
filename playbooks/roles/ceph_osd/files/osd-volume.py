"""One bluestore OSD per data disk, made by ceph-volume (raw mode) on the disks given, and brought
up by systemd at every boot.

Never touches a disk that holds anything but an OSD of this host's cluster: every disk is checked
first, and one that holds a filesystem, a partition table, LVM or another cluster's OSD stops the run
before any change, with every such disk named. Creates only the missing OSDs and starts only the
stopped ones, so re-running it is always safe. Prints one JSON line: {"changed": ..., "osds": {disk:
id}}. Runs on the host with its own python3 and the standard library only.

    python3 osd-volume.py /dev/sdb /dev/sdc ...

Boot: ceph-volume's own units know lvm and simple OSDs, not raw ones, so each OSD gets
atlas-osd-activate@<id>.service (oneshot: `ceph-volume raw activate --no-systemd` with the disk and
OSD uuid from /etc/atlas/osd/<id>.env) and a drop-in making the package's ceph-osd@<id>.service
require it; both are enabled, with ceph-osd.target. An OSD still running outside its unit (started
by hand or by an earlier version of this script) is stopped first, so systemd owns it.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

PID_FILE = "/run/ceph/ceph-osd.{}.pid"
ACTIVATE_UNIT = "/etc/systemd/system/atlas-osd-activate@.service"
ACTIVATE_UNIT_TEXT = """\
[Unit]
Description=Ceph OSD %i: data directory from its raw device (ceph-volume raw activate)
After=local-fs.target
Before=ceph-osd@%i.service

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/atlas/osd/%i.env
ExecStart=/usr/sbin/ceph-volume raw activate --device ${OSD_DEVICE} --osd-id %i --osd-uuid ${OSD_UUID} --no-systemd

[Install]
WantedBy=ceph-osd.target
"""
ENV_FILE = "/etc/atlas/osd/{}.env"
DROPIN = "/etc/systemd/system/ceph-osd@{}.service.d/50-atlas-activate.conf"
DROPIN_TEXT = """\
[Unit]
Requires=atlas-osd-activate@{0}.service
After=atlas-osd-activate@{0}.service
"""
OSD_UNIT = "ceph-osd@{}.service"
ACTIVATE = "atlas-osd-activate@{}.service"
# passed on to the activation at boot: ceph-volume finds loop devices only when allowed
PASSED_ENV = ("CEPH_VOLUME_ALLOW_LOOP_DEVICES",)
STABLE_S = 2.0  # an OSD counts as started once its unit has been active this long, unrestarted
START_TIMEOUT_S = 60.0


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


def write(path: str, text: str) -> bool:
    """Writes `text` to `path` unless it holds it already; whether it wrote."""
    file = Path(path)
    if file.exists() and file.read_text() == text:
        return False
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(file)
    return True


def env_text(disk: str, osd_uuid: str) -> str:
    passed = [f"{name}={os.environ[name]}" for name in PASSED_ENV if name in os.environ]
    return "\n".join([f"OSD_DEVICE={disk}", f"OSD_UUID={osd_uuid}", *passed]) + "\n"


def install_units(osds: dict[str, tuple[int, str]]) -> bool:
    """The activation unit, each OSD's environment file and drop-in; systemd reloaded when one of
    them changed. Whether anything changed."""
    changed = write(ACTIVATE_UNIT, ACTIVATE_UNIT_TEXT)
    for disk, (osd_id, osd_uuid) in osds.items():
        changed |= write(ENV_FILE.format(osd_id), env_text(disk, osd_uuid))
        changed |= write(DROPIN.format(osd_id), DROPIN_TEXT.format(osd_id))
    if changed:
        run("systemctl", "daemon-reload")
    return changed


def unit_state(unit: str) -> dict[str, str]:
    out = run(
        "systemctl", "show", "--property=ActiveState,SubState,NRestarts,ActiveEnterTimestampMonotonic", unit
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def enabled(unit: str) -> bool:
    done = subprocess.run(["systemctl", "is-enabled", "--quiet", unit], capture_output=True, timeout=60)
    return done.returncode == 0


def outside_systemd(osd_id: int) -> int | None:
    """The PID of a ceph-osd for `osd_id` that its unit did not start, if one runs."""
    try:
        pid = int(Path(PID_FILE.format(osd_id)).read_text())
        if b"ceph-osd" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    except (OSError, ValueError):
        return None
    main_pid = run("systemctl", "show", "--property=MainPID", "--value", OSD_UNIT.format(osd_id)).stdout
    return None if main_pid.strip() == str(pid) else pid


def stop_outside_systemd(osd_id: int) -> None:
    pid = outside_systemd(osd_id)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.2)
    raise Refused(f"osd.{osd_id} (pid {pid}, started outside systemd) did not stop for its unit to start it")


def journal_tail(unit: str) -> str:
    out = run("journalctl", "-u", unit, "-n", "5", "--no-pager", "-o", "cat", ok=(0, 1)).stdout
    return " / ".join(line.strip() for line in out.splitlines() if line.strip())


def wait_started(disk: str, osd_id: int) -> None:
    """Returns once ceph-osd@<id> has run STABLE_S seconds without systemd restarting it."""
    unit = OSD_UNIT.format(osd_id)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        state = unit_state(unit)
        since_s = time.monotonic() - int(state.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
        restarted = state.get("NRestarts", "0") != "0"
        if state.get("ActiveState") == "active" and not restarted and since_s >= STABLE_S:
            return
        if restarted or state.get("ActiveState") == "failed" or time.monotonic() >= deadline:
            shown = f"{state.get('ActiveState')}/{state.get('SubState')}"
            raise Refused(f"osd.{osd_id} on {disk} did not start ({unit} {shown}): {journal_tail(unit)}")
        time.sleep(0.5)


def start(disk: str, osd_id: int) -> bool:
    """The OSD's units enabled and running; whether that changed anything."""
    units = (ACTIVATE.format(osd_id), OSD_UNIT.format(osd_id))
    if all(enabled(u) for u in units) and unit_state(units[1]).get("ActiveState") == "active":
        return False
    stop_outside_systemd(osd_id)
    run("systemctl", "enable", "--now", *units)
    wait_started(disk, osd_id)
    return True


def main(disks: list[str]) -> dict[str, object]:
    fsid = run("ceph-conf", "--lookup", "fsid").stdout.strip()
    for directory in ("/var/log/ceph", "/run/ceph", "/var/lib/ceph/osd"):
        run("install", "-d", "-o", "ceph", "-g", "ceph", directory)
    _, to_prepare = check(disks, fsid)
    changed = False
    for disk in to_prepare:
        run("ceph-volume", "raw", "prepare", "--bluestore", "--data", disk)
        changed = True
    found = osds_on(disks)
    osds = {}  # disk -> (OSD id, OSD uuid)
    for disk in disks:
        osd = found.get(device_number(disk))
        if osd is None:
            raise Refused(f"{disk}: ceph-volume raw list finds no OSD on it after prepare")
        osds[disk] = (int(str(osd["osd_id"])), str(osd["osd_uuid"]))
    changed |= install_units(osds)
    for disk, (osd_id, _) in sorted(osds.items()):
        changed |= start(disk, osd_id)
    if not enabled("ceph-osd.target"):
        run("systemctl", "enable", "ceph-osd.target")
        changed = True
    run("systemctl", "start", "ceph-osd.target")
    return {"changed": changed, "osds": {d: osd_id for d, (osd_id, _) in osds.items()}}


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1:])))
    except Refused as e:
        sys.exit(str(e))
