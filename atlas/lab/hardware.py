"""What a lab server is made of, as its vendor built it: serial number and NIC MACs.

The lab keeps these itself, in the server's directory (`hardware.json`), not in NetBox: NetBox holds
what the datacenter recorded when the hardware arrived, the BMC reports what is really in the rack,
and the two can differ as they do in a datacenter (a server racked in the wrong slot, NICs swapped
between servers). A new server takes the serial NetBox recorded for it (receiving recorded what it
unpacked) and MACs of its own, stable for its name; the server keeps them across reboots and lab
boots until `lab reset` or `lab down` removes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from atlas.core.model import Device
from atlas.lab.disks import DISK_SIZE


@dataclass
class Hardware:
    serial: str
    macs: dict[str, str] = field(default_factory=dict)  # NIC name -> MAC
    disks: dict[str, int] = field(default_factory=dict)  # data disk -> bytes

    @staticmethod
    def path(node_dir: Path) -> Path:
        return node_dir / "hardware.json"

    @classmethod
    def load(cls, node_dir: Path) -> Hardware | None:
        path = cls.path(node_dir)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(
            serial=str(data["serial"]),
            macs={str(k): str(v) for k, v in data["macs"].items()},
            disks={str(k): int(v) for k, v in data.get("disks", {}).items()},
        )

    @classmethod
    def of(cls, node_dir: Path, lab: str, device: Device) -> Hardware:
        """The server's record, made now for a new server (and for a NIC it did not have)."""
        hw = cls.load(node_dir) or cls(serial=device.serial or _made_up_serial(lab, device.name))
        missing = [i.name for i in device.nics if i.name not in hw.macs]
        disks = [d for d in device.disks if d not in hw.disks]
        if missing or disks or not cls.path(node_dir).exists():
            for nic in missing:
                hw.macs[nic] = vendor_mac(lab, device.name, nic)
            for disk in disks:
                hw.disks[disk] = DISK_SIZE
            hw.save(node_dir)
        return hw

    def save(self, node_dir: Path) -> None:
        node_dir.mkdir(parents=True, exist_ok=True)
        self.path(node_dir).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


def vendor_mac(lab: str, device: str, nic: str) -> str:
    """A locally administered unicast MAC, stable for the lab, server and NIC."""
    digest = hashlib.sha256(f"{lab}/{device}/{nic}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _made_up_serial(lab: str, device: str) -> str:
    return "LAB" + hashlib.sha256(f"{lab}/{device}".encode()).hexdigest()[:10].upper()
