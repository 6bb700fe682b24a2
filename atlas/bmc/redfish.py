"""Redfish BMCs through sushy, OpenStack Ironic's client: one ComputerSystem per BMC (a server's own).

Every request is bounded by the login's timeout, sushy's own retries of a busy BMC are off (the
caller decides whether to try again), and every sushy or connection error becomes a BmcError that
names the BMC's address and what was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_errors

from atlas.bmc.base import BmcError, BmcLogin, BootSource, Inventory, Power

_TARGETS = {
    BootSource.DISK: sushy.BOOT_SOURCE_TARGET_HDD,
    BootSource.PXE: sushy.BOOT_SOURCE_TARGET_PXE,
    BootSource.HTTP: sushy.BOOT_SOURCE_TARGET_UEFI_HTTP,
}


def _cause(e: BaseException) -> str:
    """The innermost reason of a connection error (requests wraps urllib3's, which wraps the OS's)."""
    inner = getattr(e, "kwargs", {}).get("error") if hasattr(e, "kwargs") else None
    text = str(inner or e)
    for marker in ("Connection refused", "No route to host", "Network is unreachable", "timed out"):
        if marker in text:
            return marker.lower() if marker != "timed out" else "timed out"
    return text


class RedfishBmc:
    def __init__(self, login: BmcLogin) -> None:
        self.login = login
        self._client: Any = None
        self._system: Any = None

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        try:
            yield
        except sushy_errors.AccessError as e:
            status = getattr(e, "status_code", "")
            raise BmcError(f"BMC {self.login.address}: {what}: login refused ({status})") from None
        except sushy_errors.ConnectionError as e:
            cause = _cause(e)
            if "timed out" in cause.lower() or "timeout" in cause.lower():
                cause = f"no answer within {self.login.timeout:g} s"
            raise BmcError(f"BMC {self.login.address}: {what}: {cause}") from None
        except sushy_errors.SushyError as e:
            raise BmcError(f"BMC {self.login.address}: {what}: {e}") from None

    def _connected(self) -> Any:
        if self._system is None:
            with self._asking("connecting"):
                verify: bool | str = str(self.login.ca_file) if self.login.ca_file else True
                self._client = sushy.Sushy(
                    f"{self.login.url}/redfish/v1/",
                    auth=sushy_auth.BasicAuth(self.login.username, self.login.password),
                    verify=verify,
                    server_side_retries=1,  # one try: sushy counts 0 as its default of 3
                    read_timeout=self.login.timeout,
                    connect_timeout=self.login.timeout,
                )
                members = self._client.get_system_collection().get_members()
                if len(members) != 1:
                    raise BmcError(
                        f"BMC {self.login.address}: {len(members)} systems behind it; "
                        "Atlas expects a server's own BMC (one system)"
                    )
                self._system = members[0]
        return self._system

    def inventory(self) -> Inventory:
        system = self._connected()
        with self._asking("reading the inventory"):
            system.refresh(force=True)
            nics = {
                str(n.identity): str(n.mac_address).lower()
                for n in system.ethernet_interfaces.get_members()
                if n.mac_address
            }
            disks: list[str] = []
            for storage in system.simple_storage.get_members():
                disks += [str(d.name) for d in storage.devices or ()]
            allowed = system.get_allowed_system_boot_source_values() or set()
            power = Power.ON if system.power_state == sushy.POWER_STATE_ON else Power.OFF
            progress = system.boot_progress
            state = getattr(progress.last_state, "value", "") if progress is not None else ""
            said = str(progress.oem_last_state or "") if progress is not None else ""
            return Inventory(
                serial=str(system.serial_number or ""),
                power=power,
                nics=dict(sorted(nics.items())),
                disks=tuple(sorted(disks)),
                boot_sources=tuple(s for s, target in _TARGETS.items() if target in allowed),
                boot_progress=said if state == "OEM" else str(state or ""),
            )

    def power_on(self, boot: BootSource | None = None) -> None:
        system = self._connected()
        if boot is not None:
            with self._asking("reading the boot sources"):
                allowed = system.get_allowed_system_boot_source_values() or set()
            if _TARGETS[boot] not in allowed:
                offered = ", ".join(str(s) for s, t in _TARGETS.items() if t in allowed) or "none"
                raise BmcError(
                    f"BMC {self.login.address}: cannot boot once from {boot} (it offers: {offered})"
                )
            with self._asking(f"setting the next boot from {boot}"):
                system.set_system_boot_options(target=_TARGETS[boot], enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
        self._reset(system, sushy.RESET_ON, "powering on")

    def power_off(self) -> None:
        self._reset(self._connected(), sushy.RESET_FORCE_OFF, "powering off")

    def _reset(self, system: Any, kind: str, what: str) -> None:
        reset: Callable[[str], None] = system.reset_system
        with self._asking(what):
            reset(kind)
