"""Host images for the lab: a tarball holding the lab's workload and the image.json that the image
playbook reads (version, services, their health URLs); and the operating system image its servers
boot from the network."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

APP = Path(__file__).with_name("image") / "atlas-app"
APP_PORT = 8080
# A release whose service exits at once: what a bad build looks like to the rollout.
BROKEN_APP = "#!/bin/sh\necho 'atlas-app: cannot start: bad release' >&2\nexit 3\n"


def image_spec(version: str) -> dict[str, object]:
    return {
        "version": version,
        "services": [
            {
                "name": "atlas-app",
                "command": f"bin/atlas-app --port {APP_PORT}",
                "health_url": f"http://127.0.0.1:{APP_PORT}/health",
            }
        ],
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = (
        len(data),
        mode,
        0,
    )  # same content, same bytes: publish stays idempotent
    tar.addfile(info, io.BytesIO(data))


def build(version: str, dest: Path, broken: bool = False) -> Path:
    """Writes the image of `version` to `dest`; `broken` ships a service that never starts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "image.json", json.dumps(image_spec(version), indent=2).encode(), 0o644)
        _add(tar, "bin/atlas-app", BROKEN_APP.encode() if broken else APP.read_bytes(), 0o755)
    dest.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return dest


# --- the operating system image servers network-boot (atlas.lab.firmware writes its rootfs/) -------
OS_IMAGE_VERSION = "os-2026.12.1"
# The server's ports up with no address so its switches see it (its NICs, not the management port)
_PORTS_NETWORK = (
    "[Match]\nName=!eth0\nKind=veth\n\n[Link]\nRequiredForOnline=no\n\n"
    "[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
)
_LLDPD = "configure lldp tx-interval 5\nconfigure lldp portidsubtype ifname\nconfigure system interface pattern *,!eth0,!lo\n"


def _dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    tar.addfile(info)


def build_os(version: str, dest: Path, host_key: Path, authorized_key: str) -> Path:
    """The OS image of `version`: Atlas's login key, the SSH host key it is built with (`host_key`,
    its .pub beside it: the manifest records it), the ports and LLDP as a fresh server has them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for d, mode in (
            ("rootfs", 0o755),
            ("rootfs/etc", 0o755),
            ("rootfs/etc/ssh", 0o755),
            ("rootfs/etc/systemd", 0o755),
            ("rootfs/etc/systemd/network", 0o755),
            ("rootfs/etc/lldpd.d", 0o755),
            ("rootfs/root", 0o700),
            ("rootfs/root/.ssh", 0o700),
        ):
            _dir(tar, d, mode)
        _add(tar, "rootfs/etc/atlas-image.json", json.dumps({"version": version}).encode(), 0o644)
        _add(tar, "rootfs/etc/ssh/ssh_host_ed25519_key", host_key.read_bytes(), 0o600)
        _add(tar, "rootfs/etc/ssh/ssh_host_ed25519_key.pub", Path(f"{host_key}.pub").read_bytes(), 0o644)
        _add(tar, "rootfs/root/.ssh/authorized_keys", authorized_key.strip().encode() + b"\n", 0o600)
        _add(tar, "rootfs/etc/systemd/network/99-provisioned-ports.network", _PORTS_NETWORK.encode(), 0o644)
        _add(tar, "rootfs/etc/lldpd.d/10-image.conf", _LLDPD.encode(), 0o644)
    dest.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return dest
