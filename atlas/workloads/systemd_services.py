"""Services run straight on hosts as systemd units, reached at the hosts' anycast addresses: the
`systemd-services` adapter, for servers that announce their services' addresses themselves.

The host image's services are units `atlas-image-<name>.service`, each PartOf= and WantedBy= the
target `atlas-image.target` (playbooks/services/systemd/image-services.yml writes them and enables
the units, never the target). The target's enablement is the host's serving state, owned here: drain
disables it (`disable --now` stops its units), undrain enables it, so a drained host that reboots
starts none of its services and announces nothing.

Drain: withdraw the service addresses persistently (a systemd-networkd drop-in keeps the service
interface down across reboots, and the interface goes down now), wait for routing to follow, stop the
target, set the drain mark (/etc/atlas/drained, under which a service answers 503), then check that no
image unit runs and the interface is down. Undrain is the reverse: mark removed, target enabled and
every image unit running (else the journal of those that are not is in the error), then announce.
Every command is a constant run over SSH: nothing from NetBox reaches the host's shell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from atlas.core.model import Credential, Device
from atlas.core.run import poll_until
from atlas.net.intent import SERVICE_DRAINED_DROPIN, SERVICE_INTERFACE
from atlas.net.sessions import DeviceUnreachable, ssh_exec
from atlas.workloads import DrainFailed, Sources

# The names the image playbook (playbooks/services/systemd/) gives the image's units.
IMAGE_TARGET = "atlas-image.target"
IMAGE_UNIT_PREFIX = "atlas-image-"
IMAGE_TARGET_FILE = f"/etc/systemd/system/{IMAGE_TARGET}"
MARK = "/etc/atlas/drained"  # a drained host's services answer 503 while it exists
DRAINED_DROPIN_CONTENT = "[Link]\nActivationPolicy=down\n"
_DROPIN_PRINTF = r"[Link]\nActivationPolicy=down\n"  # printf's format for DRAINED_DROPIN_CONTENT
SETTLE_S = 2.0  # OSPF on the lab's timers moves traffic within a second of a withdrawal
START_TIMEOUT_S = 15.0  # how long undrain waits for every image unit to be active
STOP_TIMEOUT_S = 120.0  # systemd waits up to 90 s (TimeoutStopSec) for a unit to stop
JOURNAL_LINES = 20


def image_unit(service: str) -> str:
    """The unit of the image's service `service`."""
    return f"{IMAGE_UNIT_PREFIX}{service}.service"


_UNITS = f"'{IMAGE_UNIT_PREFIX}*.service'"
_IF_EXISTS = f"ip link show {SERVICE_INTERFACE} >/dev/null 2>&1"

UNITS_STATE = f"systemctl show --property=Id,LoadState,ActiveState,SubState {_UNITS}"
INTERFACE_STATE = f"ip -j link show dev {SERVICE_INTERFACE} 2>/dev/null || echo '[]'"
WITHDRAW = (
    f"mkdir -p {PurePosixPath(SERVICE_DRAINED_DROPIN).parent}"
    f" && printf '{_DROPIN_PRINTF}' > {SERVICE_DRAINED_DROPIN}"
    f" && networkctl reload"
    f" && if {_IF_EXISTS}; then ip link set {SERVICE_INTERFACE} down; fi"
)
# stopping the target stops its PartOf units; units started on their own (the image playbook
# restarts them on a drained host) are stopped by name too; the drain checks what still runs
STOP = (
    f"{{ test ! -e {IMAGE_TARGET_FILE} || systemctl disable --now {IMAGE_TARGET}; }}"
    f" && {{ systemctl stop {_UNITS} || true; }}"
)
SET_MARK = f"mkdir -p {PurePosixPath(MARK).parent} && echo atlas > {MARK}"
REMOVE_MARK = f"rm -f {MARK}"
START = f"test ! -e {IMAGE_TARGET_FILE} || systemctl enable --now {IMAGE_TARGET}"
JOURNAL_OF_STOPPED = (
    f"for u in $(systemctl show --property=Id --value {_UNITS}); do"
    f' systemctl is-active --quiet "$u" || {{ echo "== $u";'
    f' journalctl -u "$u" -n {JOURNAL_LINES} --no-pager -o cat; }}; done'
)
UNWITHDRAW = (
    f"if test -e {SERVICE_DRAINED_DROPIN}; then rm -f {SERVICE_DRAINED_DROPIN} && networkctl reload; fi"
)
ANNOUNCE = f"if {_IF_EXISTS}; then ip link set {SERVICE_INTERFACE} up; fi"
DRAINED = f"test -e {MARK} && echo yes || echo no"


@dataclass(frozen=True)
class UnitState:
    name: str
    active: str  # systemd's ActiveState: active, inactive, failed, activating, ...
    sub: str

    @property
    def shown(self) -> str:
        return f"{self.name} ({self.active}/{self.sub})"


def parse_units(output: str) -> list[UnitState]:
    """The loaded image units in `systemctl show` output (blocks of Key=value lines)."""
    units = []
    for block in output.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        name = props.get("Id", "")
        if name.startswith(IMAGE_UNIT_PREFIX) and props.get("LoadState") == "loaded":
            units.append(UnitState(name, props.get("ActiveState", ""), props.get("SubState", "")))
    return units


def interface_up(output: str) -> bool:
    """Whether `ip -j link show` output shows the interface administratively up."""
    try:
        links = json.loads(output or "[]")
    except ValueError:
        return True  # unreadable: not known to be down
    return any("UP" in link.get("flags", []) for link in links)


def journal_lines(output: str) -> str:
    """The journal tails JOURNAL_OF_STOPPED printed, on one line."""
    return " / ".join(line.strip() for line in output.splitlines() if line.strip())


class SystemdServices:
    """Drains a host by withdrawing its service addresses and stopping its image target."""

    def __init__(
        self,
        cred_of: Callable[[Device], Credential],
        settle_s: float = SETTLE_S,
        start_timeout_s: float = START_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._cred_of, self._settle, self._start_timeout = cred_of, settle_s, start_timeout_s
        self._sleep = sleep

    def _run(self, host: Device, command: str, what: str, timeout: float = 15.0) -> str:
        try:
            return ssh_exec(host, self._cred_of(host), command, timeout=timeout)
        except DeviceUnreachable as e:
            raise DrainFailed(f"{host.name}: {what}: {e}") from None

    def _units(self, host: Device) -> list[UnitState]:
        return parse_units(self._run(host, UNITS_STATE, "read the image units"))

    def _interface_up(self, host: Device) -> bool:
        return interface_up(self._run(host, INTERFACE_STATE, f"read {SERVICE_INTERFACE}"))

    def drain(self, host: Device) -> None:
        if host.anycast:
            self._run(host, WITHDRAW, "withdraw the service addresses")
            self._sleep(self._settle)
        self._run(host, STOP, f"stop {IMAGE_TARGET}", timeout=STOP_TIMEOUT_S)
        self._run(host, SET_MARK, "drain")
        still = [u.shown for u in self._units(host) if u.active not in ("inactive", "failed")]
        if host.anycast and self._interface_up(host):
            still.append(f"{SERVICE_INTERFACE} (its addresses still announced)")
        if still:
            raise DrainFailed(f"{host.name}: still up after the drain: {', '.join(still)}")

    def undrain(self, host: Device) -> None:
        self._run(host, REMOVE_MARK, "undrain")
        self._run(host, START, f"start {IMAGE_TARGET}", timeout=STOP_TIMEOUT_S)
        units = poll_until(
            lambda: self._units(host),
            lambda found: all(u.active == "active" for u in found),
            self._start_timeout,
            sleep=self._sleep,
        )
        down = [u.shown for u in units if u.active != "active"]
        if down:
            journal = journal_lines(self._run(host, JOURNAL_OF_STOPPED, "read the units' journal"))
            raise DrainFailed(
                f"{host.name}: not running after the undrain: {', '.join(down)}; journal: {journal}"
            )
        self._run(host, UNWITHDRAW, "keep the service interface up at boot")
        if host.anycast:
            self._run(host, ANNOUNCE, "announce the service addresses")

    def drained(self, host: Device) -> bool:
        return self._run(host, DRAINED, "drain state").strip() == "yes"


def from_sources(sources: Sources) -> SystemdServices:
    return SystemdServices(sources.cred_of)
