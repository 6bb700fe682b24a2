"""DHCP for network boot through Debian's Kea (kea-dhcp4): a reservation per server NIC MAC that NetBox
holds, nothing for a MAC it does not (no dynamic pool: an unknown machine on the provisioning network
gets no address and no image).

A reservation gives the server its management address, its name and where its image is (the BOOTP
file field: an HTTP URL, as UEFI HTTP boot and iPXE take it). The configuration is pure data, rendered
here and checked by `kea-dhcp4 -t` before the running server is asked to load it (SIGHUP).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from atlas.core.errors import AtlasError

KEA = "kea-dhcp4"
LEASE_SECONDS = 3600
BOOT_FILE_MAX = 127  # the BOOTP file field: 128 bytes with its terminating NUL


class DhcpError(AtlasError, RuntimeError):
    pass


@dataclass(frozen=True, order=True)
class Reservation:
    """One server NIC on the provisioning network: its MAC, the address and name it is given, and
    the URL of the image it boots."""

    mac: str
    address: IPv4Address
    hostname: str
    boot_url: str

    def to_json(self) -> dict[str, str]:
        return {
            "mac": self.mac,
            "address": str(self.address),
            "hostname": self.hostname,
            "boot_url": self.boot_url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reservation:
        return cls(
            mac=str(data["mac"]).lower(),
            address=IPv4Address(str(data["address"])),
            hostname=str(data["hostname"]),
            boot_url=str(data["boot_url"]),
        )

    def problems(self, subnet: IPv4Network) -> list[str]:
        found = []
        if self.address not in subnet:
            found.append(
                f"{self.hostname}: address {self.address} is outside the provisioning subnet {subnet}"
            )
        if len(self.boot_url.encode()) > BOOT_FILE_MAX:
            found.append(f"{self.hostname}: image URL longer than {BOOT_FILE_MAX} bytes: {self.boot_url}")
        return found


def check(subnet: IPv4Network, reservations: Iterable[Reservation]) -> list[str]:
    """Every problem of a set of reservations: each named, none skipped."""
    problems: list[str] = []
    seen_mac: dict[str, str] = {}
    seen_ip: dict[IPv4Address, str] = {}
    for r in sorted(reservations):
        problems += r.problems(subnet)
        if r.mac in seen_mac:
            problems.append(f"MAC {r.mac} is reserved for both {seen_mac[r.mac]} and {r.hostname}")
        if r.address in seen_ip:
            problems.append(f"address {r.address} is reserved for both {seen_ip[r.address]} and {r.hostname}")
        seen_mac.setdefault(r.mac, r.hostname)
        seen_ip.setdefault(r.address, r.hostname)
    return problems


def config(
    interface: str, subnet: IPv4Network, reservations: Iterable[Reservation], state: Path
) -> dict[str, Any]:
    """kea-dhcp4's configuration: one subnet on one interface, reservations only."""
    return {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "raw"},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(state / "leases4.csv"),
                "lfc-interval": 3600,
            },
            "valid-lifetime": LEASE_SECONDS,
            "authoritative": True,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": str(subnet),
                    "reservations": [
                        {
                            "hw-address": r.mac,
                            "ip-address": str(r.address),
                            "hostname": r.hostname,
                            "boot-file-name": r.boot_url,
                            "option-data": [{"name": "host-name", "data": r.hostname, "always-send": True}],
                        }
                        for r in sorted(reservations)
                    ],
                }
            ],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    "output_options": [{"output": str(state / "kea-dhcp4.log"), "maxsize": 10485760}],
                    "severity": "INFO",
                }
            ],
        }
    }


class KeaServer:
    """One kea-dhcp4 process, its configuration file and its state directory."""

    def __init__(self, interface: str, subnet: IPv4Network, state: Path) -> None:
        self.interface, self.subnet, self.state = interface, subnet, state
        self.conf = state / "kea-dhcp4.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return os.environ | {"KEA_LOCKFILE_DIR": str(self.state), "KEA_PIDFILE_DIR": str(self.state)}

    def write(self, reservations: Iterable[Reservation]) -> None:
        """Checks and writes the configuration (the running server keeps the last good one)."""
        wanted = sorted(reservations)
        problems = check(self.subnet, wanted)
        if problems:
            raise DhcpError("DHCP reservations refused: " + "; ".join(problems))
        self.state.mkdir(parents=True, exist_ok=True)
        candidate = self.conf.with_suffix(".new")
        candidate.write_text(
            json.dumps(config(self.interface, self.subnet, wanted, self.state), indent=2) + "\n"
        )
        test = subprocess.run([KEA, "-t", str(candidate)], capture_output=True, text=True, env=self._env())
        if test.returncode != 0:
            last = (test.stdout + test.stderr).strip().splitlines()[-1:] or ["no output"]
            raise DhcpError(f"kea-dhcp4 refused the configuration: {last[0]}")
        candidate.replace(self.conf)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running():
            return
        if not self.conf.exists():
            self.write([])
        log = (self.state / "kea-dhcp4.out").open("ab")
        self.proc = subprocess.Popen([KEA, "-c", str(self.conf)], stdout=log, stderr=log, env=self._env())
        log.close()

    def reload(self) -> None:
        """The running server loads the configuration written last (kea-dhcp4 reloads on SIGHUP)."""
        if self.proc is None or not self.running():
            self.start()
            return
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
