"""What starts, stops and reads a server's services: one ServiceManager per kind (systemd, on every
production server), chosen per server by its custom field service_manager in NetBox (empty: systemd).

Atlas does not start or stop services itself: the playbooks do, and they choose their tasks by the
variables the server's manager gives them (`playbook_variables`: `atlas_service_manager` names the
task files under playbooks/services/<name>/ they include). A server's services are read with the
manager's constant status command and its parser (`parse_status`).

Adding a manager: a module here with its class (name, playbook variables, status command and parser),
registered below; its task files in playbooks/services/<name>/; a parser test on captured output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from atlas.core.model import Device
from atlas.core.registry import Registry
from atlas.sot.schema import DEFAULT_SERVICE_MANAGER, SERVICE_MANAGER_FIELD


@dataclass(frozen=True)
class ServiceState:
    """One service as its manager reports it."""

    name: str
    state: str  # the manager's own word for it: systemd's active, failed, inactive, ...
    running: bool
    detail: str = ""


class ServiceManager(Protocol):
    """Starts, stops and reads a host's services, for the playbooks and for Atlas."""

    @property
    def name(self) -> str:
        """As NetBox's custom field and the playbooks name it."""

    def playbook_variables(self) -> dict[str, str]:
        """What a playbook gets to drive the host's services."""

    @property
    def status_command(self) -> str:
        """A constant command whose output `parse_status` reads: nothing from NetBox reaches the
        host's shell."""

    def parse_status(self, output: str) -> dict[str, ServiceState]:
        """Every service the manager knows on the host, by name."""


SERVICE_MANAGERS = Registry[ServiceManager](
    "service manager", "the server's custom field service_manager in NetBox"
)


def manager_name(device: Device) -> str:
    """The server's service manager as NetBox names it; empty means the default."""
    value = device.custom_fields.get(SERVICE_MANAGER_FIELD)
    return str(value) if value else DEFAULT_SERVICE_MANAGER


def manager_of(device: Device) -> ServiceManager:
    """The server's service manager, or Refused naming the server and the value."""
    return SERVICE_MANAGERS.get(device.name, manager_name(device))


def service_problems(devices: Iterable[Device]) -> list[str]:
    """Preflight: every server whose service manager Atlas does not know, with the value."""
    return [
        problem
        for d in devices
        if d.role.is_server and (problem := SERVICE_MANAGERS.problem(d.name, manager_name(d))) is not None
    ]


def playbook_variables(device: Device) -> dict[str, str]:
    """The variables every playbook run on this server gets from its service manager."""
    return manager_of(device).playbook_variables()


# --- the managers Atlas knows: one module each ----------------------------------------------------
from atlas.hosts.services.systemd import Systemd  # noqa: E402  (it uses the types above)

SERVICE_MANAGERS.register(Systemd.name, Systemd())
