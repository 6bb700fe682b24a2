"""The lab servers' firmware: what a server does between power-on and its operating system.

A server boots from its disk, or, for one boot its BMC was told so, from the network as UEFI HTTP boot
does: its first NIC (`eth0`, the management port) asks DHCP for an address and an image location (the
BOOTP file field: an HTTP URL), fetches the image's manifest beside it and the image, checks the image
against the manifest's sha256, writes it to the disk and boots it. Any step that fails halts the
server there with the cause in its BMC's boot progress (Redfish `BootProgress.OemLastState`); a disk
is only written from an image whose sha256 matched, and a server whose disk was being written when it
failed keeps no half-written disk (it is blank again).

The lab's image is a layer over the lab's Debian base root filesystem (atlas.lab.machines), which
every lab disk stands on: its `rootfs/` tree is written over the base, then what an installer takes
from DHCP (the server's name, its management address, a new machine id).

The network half runs inside the server's network namespace, as the server's own NIC
(`python -m atlas.lab.firmware fetch NODE_DIR`, under `ip netns exec`); writing the disk is the BMC
process's, which mounts disks.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from atlas.lab.machines import MGMT_IFNAME, Machine

BLANK = "blank"  # in a server's directory: its disk holds no operating system
INSTALLED = "installed.json"  # in a server's directory: the image its disk was written from
DHCP_TRIES, DHCP_WAIT = 3, 2
FETCH_TIMEOUT = 30.0
_UDHCPC_SCRIPT = '#!/bin/sh\n[ "$1" = bound ] && env > "$ATLAS_LEASE"\nexit 0\n'


class FirmwareError(RuntimeError):
    pass


@dataclass(frozen=True)
class Lease:
    address: IPv4Interface
    hostname: str
    boot_url: str


def _netboot_dir(node_dir: Path) -> Path:
    return node_dir / "run" / "netboot"


# --- inside the server's network namespace ------------------------------------------------------
def _dhcp(node_dir: Path) -> Lease:
    work = _netboot_dir(node_dir)
    script, lease_file = work / "udhcpc.sh", work / "lease.env"
    script.write_text(_UDHCPC_SCRIPT)
    script.chmod(0o755)
    lease_file.unlink(missing_ok=True)
    subprocess.run(["ip", "link", "set", MGMT_IFNAME, "up"], check=True)
    mac = Path(f"/sys/class/net/{MGMT_IFNAME}/address").read_text().strip()
    done = subprocess.run(
        [
            "udhcpc",
            "-i",
            MGMT_IFNAME,
            "-f",
            "-q",
            "-n",
            "-t",
            str(DHCP_TRIES),
            "-T",
            str(DHCP_WAIT),
            "-A",
            "1",
            "-O",
            "hostname",
            "-s",
            str(script),
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "ATLAS_LEASE": str(lease_file)},
        timeout=DHCP_TRIES * DHCP_WAIT + 30,
    )
    if done.returncode != 0 or not lease_file.exists():
        raise FirmwareError(f"no DHCP answer on {MGMT_IFNAME} ({mac}) after {DHCP_TRIES} tries")
    env = dict(line.split("=", 1) for line in lease_file.read_text().splitlines() if "=" in line)
    lease_file.unlink()
    if not env.get("boot_file"):
        raise FirmwareError(f"DHCP gave {MGMT_IFNAME} ({mac}) an address but no image to boot")
    return Lease(
        address=IPv4Interface(f"{env['ip']}/{env.get('mask', '24')}"),
        hostname=env.get("hostname", ""),
        boot_url=env["boot_file"],
    )


def _get(url: str) -> http.client.HTTPResponse:
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(url, timeout=FETCH_TIMEOUT)
        return response
    except urllib.error.HTTPError as e:
        raise FirmwareError(f"fetching {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FirmwareError(f"fetching {url}: {getattr(e, 'reason', e)}") from None


def fetch(node_dir: Path) -> None:
    """DHCP, then the image over HTTP, checked: writes lease.json and image.tar.gz, or error.txt."""
    work = _netboot_dir(node_dir)
    work.mkdir(parents=True, exist_ok=True)
    for f in ("lease.json", "image.tar.gz", "error.txt"):
        (work / f).unlink(missing_ok=True)
    try:
        lease = _dhcp(node_dir)
        subprocess.run(["ip", "addr", "add", str(lease.address), "dev", MGMT_IFNAME], check=True)
        try:
            manifest_url = lease.boot_url.rsplit("/", 1)[0] + "/manifest.json"
            with _get(manifest_url) as r:
                want = str(json.loads(r.read())["sha256"])
            digest = hashlib.sha256()
            partial = work / "image.tar.gz.part"
            with _get(lease.boot_url) as r, partial.open("wb") as out:
                while chunk := r.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != want:
                partial.unlink()
                raise FirmwareError(
                    f"image {lease.boot_url} is corrupt: sha256 {digest.hexdigest()}, its manifest says {want}"
                )
            partial.rename(work / "image.tar.gz")
        finally:
            subprocess.run(["ip", "addr", "flush", "dev", MGMT_IFNAME], check=False)
        (work / "lease.json").write_text(
            json.dumps(
                {"address": str(lease.address), "hostname": lease.hostname, "boot_url": lease.boot_url}
            )
        )
    except FirmwareError as e:
        (work / "error.txt").write_text(str(e))


# --- in the BMC process -------------------------------------------------------------------------
def network_boot(machine: Machine, base: Path, python: str = sys.executable) -> str:
    """Fetches and checks the image from the network, then writes the disk; the image's URL."""
    work = _netboot_dir(machine.dir)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ip", "netns", "exec", machine.netns, python, "-m", "atlas.lab.firmware", "fetch", str(machine.dir)],
        check=False,
        capture_output=True,
        timeout=DHCP_TRIES * DHCP_WAIT + 4 * FETCH_TIMEOUT + 60,
    )
    if (work / "error.txt").exists():
        raise FirmwareError((work / "error.txt").read_text())
    if not (work / "lease.json").exists():
        raise FirmwareError("network boot stopped without a result")
    lease = json.loads((work / "lease.json").read_text())
    image = work / "image.tar.gz"
    try:
        write_disk(
            machine, base, image, Lease(IPv4Interface(lease["address"]), lease["hostname"], lease["boot_url"])
        )
    finally:
        image.unlink(missing_ok=True)
    return str(lease["boot_url"])


def wipe(machine: Machine) -> None:
    """The disk blank: no operating system on it (the machine is off)."""
    machine.unmount()
    for d in (machine.upper, machine.work):
        shutil.rmtree(d, ignore_errors=True)
    for marker in ("provisioned", INSTALLED):
        (machine.dir / marker).unlink(missing_ok=True)
    (machine.dir / BLANK).touch()


def write_disk(machine: Machine, base: Path, image: Path, lease: Lease) -> None:
    """The image written to the blank disk, then what an installer takes from DHCP."""
    wipe(machine)
    machine.mount(base)
    root = machine.root
    try:
        with tarfile.open(image, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("rootfs/") and m.name != "rootfs/"]
            if not members:
                raise FirmwareError("the image holds no rootfs/: nothing to boot")
            for m in members:
                m.name = m.name.removeprefix("rootfs/")
            tar.extractall(root, members=members, filter="data")
            version = json.loads((root / "etc" / "atlas-image.json").read_text())["version"]
        hostname = lease.hostname or machine.name
        (root / "etc" / "hostname").write_text(hostname + "\n")
        (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
        (root / "etc" / "machine-id").write_text(uuid.uuid4().hex + "\n")
        network = root / "etc" / "systemd" / "network"
        network.mkdir(parents=True, exist_ok=True)
        (network / "10-provisioned-mgmt.network").write_text(
            f"[Match]\nName={MGMT_IFNAME}\n\n[Network]\nAddress={lease.address}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
        lldpd = root / "etc" / "lldpd.d"
        lldpd.mkdir(parents=True, exist_ok=True)
        (lldpd / "20-installer.conf").write_text(
            f"configure system ip management pattern {lease.address.ip}\n"
        )
    except (FirmwareError, OSError, tarfile.TarError, KeyError, ValueError) as e:
        wipe(machine)  # nothing half-written stays
        raise FirmwareError(f"writing the image to the disk: {e}") from None
    (machine.dir / BLANK).unlink(missing_ok=True)
    (machine.dir / INSTALLED).write_text(
        json.dumps(
            {
                "image": version,
                "url": lease.boot_url,
                "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["fetch"]:
        fetch(Path(sys.argv[2]))
