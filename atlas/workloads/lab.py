"""The lab's workloads: the services of a server's image, which answer 503 to new requests while
the server carries the drain mark (/etc/atlas/drained); set and cleared over SSH."""

from __future__ import annotations

from collections.abc import Callable

from atlas.model import Device
from atlas.net.sessions import DeviceUnreachable, ssh_exec
from atlas.secrets import Credential
from atlas.workloads import DrainFailed

MARK = "/etc/atlas/drained"


class LabServices:
    def __init__(self, cred_of: Callable[[Device], Credential]) -> None:
        self._cred_of = cred_of

    def _run(self, host: Device, command: str, what: str) -> str:
        try:
            return ssh_exec(host, self._cred_of(host), command)
        except DeviceUnreachable as e:
            raise DrainFailed(f"{host.name}: {what}: {e}") from None

    def drain(self, host: Device) -> None:
        self._run(host, f"mkdir -p /etc/atlas && echo atlas > {MARK}", "drain")

    def undrain(self, host: Device) -> None:
        self._run(host, f"rm -f {MARK}", "undrain")

    def drained(self, host: Device) -> bool:
        return self._run(host, f"test -e {MARK} && echo yes || echo no", "drain state").strip() == "yes"
