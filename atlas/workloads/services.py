"""Services run straight on hosts, reached at the hosts' anycast addresses: the `services` adapter,
for any shop whose servers announce their services' addresses themselves (the lab's servers do).

Draining first withdraws the announcement (the service interface goes down, so the host's routing
daemon stops announcing it and new connections go to other servers), waits for routing to follow,
and only then sets the drain mark (/etc/atlas/drained) under which a service answers 503. Undraining is
the reverse: serve first, then announce. Both over SSH, with constant commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from atlas.core.model import Credential, Device
from atlas.net.intent import SERVICE_INTERFACE
from atlas.net.sessions import DeviceUnreachable, ssh_exec
from atlas.workloads import DrainFailed, Sources

MARK = "/etc/atlas/drained"  # a drained host's services answer 503 while it exists
SETTLE_S = 2.0  # OSPF on the lab's timers moves traffic within a second of a withdrawal
_IF_ANNOUNCING = f"! ip link show {SERVICE_INTERFACE} >/dev/null 2>&1 || ip link set {SERVICE_INTERFACE}"


class WithdrawAndMark:
    """Drains a host by withdrawing its service addresses, then marking it drained."""

    def __init__(self, cred_of: Callable[[Device], Credential], settle_s: float = SETTLE_S) -> None:
        self._cred_of, self._settle = cred_of, settle_s

    def _run(self, host: Device, command: str, what: str) -> str:
        try:
            return ssh_exec(host, self._cred_of(host), command)
        except DeviceUnreachable as e:
            raise DrainFailed(f"{host.name}: {what}: {e}") from None

    def drain(self, host: Device) -> None:
        if host.anycast:
            self._run(host, f"{_IF_ANNOUNCING} down", "withdraw the service addresses")
            time.sleep(self._settle)
        self._run(host, f"mkdir -p /etc/atlas && echo atlas > {MARK}", "drain")

    def undrain(self, host: Device) -> None:
        self._run(host, f"rm -f {MARK}", "undrain")
        if host.anycast:
            self._run(host, f"{_IF_ANNOUNCING} up", "announce the service addresses")

    def drained(self, host: Device) -> bool:
        return self._run(host, f"test -e {MARK} && echo yes || echo no", "drain state").strip() == "yes"


def from_sources(sources: Sources) -> WithdrawAndMark:
    return WithdrawAndMark(sources.cred_of)
