"""The storage servers' data disks: a loop device per disk NetBox lists, backed by a sparse file in the
lab's directory, so ceph-volume prepares real block devices exactly as on a rack's servers.

Loop devices outlive every process (and a half-dead lab), so the lab finds its own by their backing
files, never by number; each device node gets back the owner and mode it had before the lab used it
(ceph-volume hands it to the ceph user).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from atlas.lab import procs
from atlas.lab.config import LabConfig

DISK_SIZE = 4 * 2**30  # sparse: takes only what bluestore writes


@dataclass(frozen=True)
class Attached:
    device: str
    backing_file: str
    uid: int  # the device node's owner and mode before the lab used it
    gid: int
    mode: int


class LabDisks:
    def __init__(self, cfg: LabConfig) -> None:
        self.dir = cfg.dir / "disks"
        self.record = self.dir / "attached.json"

    def backing_file(self, host: str, disk: str) -> Path:
        return self.dir / f"{host}-{disk}.img"

    def attached(self) -> dict[str, str]:
        """Backing file -> loop device, for this lab's files (a deleted file still holds its device)."""
        out = procs.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], "listing loop devices")
        found = {}
        for row in json.loads(out.stdout or '{"loopdevices": []}')["loopdevices"]:
            back = (row.get("back-file") or "").removesuffix(" (deleted)")
            if back.startswith(f"{self.dir}/"):
                found[back] = row["name"]
        return found

    def attach(self, disks: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """A loop device for every disk of every host (host -> disk names) that has none yet;
        host -> disk -> device path. One attach at a time (servers power-cycled at once each ask)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            return self._attach(disks)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _attach(self, disks: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        present = self.attached()
        records = self._records()
        paths: dict[str, dict[str, str]] = {}
        for host, names in disks.items():
            for disk in names:
                backing = self.backing_file(host, disk)
                device = present.get(str(backing))
                if device is None:
                    with backing.open("ab") as f:
                        f.truncate(DISK_SIZE)
                    device = procs.run(
                        ["losetup", "--find", "--show", str(backing)], f"a loop device for {host} {disk}"
                    ).stdout.strip()
                    st = Path(device).stat()
                    records[device] = Attached(
                        device, str(backing), st.st_uid, st.st_gid, st.st_mode & 0o7777
                    )
                paths.setdefault(host, {})[disk] = device
        self._save(records)
        return paths

    def detach_all(self) -> int:
        """Detaches every loop device of this lab (the kernel lets go of a busy one once it is
        closed) and gives each device node back its owner and mode. The files stay: a rebuilt fabric
        attaches them again, its OSDs' data intact, as a rebooted server finds its disks."""
        records = self._records()
        devices = self.attached()
        for device in devices.values():
            procs.run(["losetup", "--detach", device], f"detaching {device}")
            before = records.get(device)
            if before is not None and Path(device).exists():
                os.chown(device, before.uid, before.gid)
                Path(device).chmod(before.mode)
        self.record.unlink(missing_ok=True)
        return len(devices)

    def remove(self) -> None:
        """Detached, and the disks' contents gone: new, empty disks next time."""
        self.detach_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _records(self) -> dict[str, Attached]:
        if not self.record.exists():
            return {}
        return {d: Attached(**a) for d, a in json.loads(self.record.read_text()).items()}

    def _save(self, records: dict[str, Attached]) -> None:
        """Whole or not at all: a reader never finds half a record."""
        partial = self.record.with_suffix(".partial")
        partial.write_text(json.dumps({d: asdict(a) for d, a in records.items()}, indent=1) + "\n")
        partial.replace(self.record)
