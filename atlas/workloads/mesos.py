"""Mesos as a Workloads adapter, through the master's maintenance primitives: the host is scheduled
for maintenance (frameworks get inverse offers and move their tasks), then marked DOWN; undrain marks
it UP and takes it off the schedule.

The calls are the documented master endpoints: GET/POST /maintenance/schedule (POST replaces the whole
schedule, so the current one is read and changed, never overwritten blind), POST /machine/down and
/machine/up with machine ids {hostname, ip}, GET /maintenance/status.
"""

from __future__ import annotations

import time
from typing import Any

from atlas.core.model import Device
from atlas.workloads import DrainFailed, Sources
from atlas.workloads.http import RequestsTransport, Transport

HOUR_NS = 3600 * 10**9


def machine_id(host: Device) -> dict[str, str]:
    if host.mgmt_address is None:
        raise DrainFailed(f"{host.name}: no management address in NetBox for its Mesos machine id")
    return {"hostname": host.name, "ip": str(host.mgmt_address.ip)}


class MesosMaintenance:
    def __init__(self, http: Transport, window_ns: int = 4 * HOUR_NS) -> None:
        self._http, self._window = http, window_ns

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self._http(method, path, body, None)
        if status >= 300:
            raise DrainFailed(f"Mesos {method} {path}: HTTP {status}")
        return answer

    def _schedule(self) -> list[dict[str, Any]]:
        return list((self._call("GET", "/maintenance/schedule") or {}).get("windows", []))

    def _status(self) -> dict[str, Any]:
        return self._call("GET", "/maintenance/status") or {}

    def drain(self, host: Device) -> None:
        machine = machine_id(host)
        windows = self._schedule()
        if not any(machine in w.get("machine_ids", []) for w in windows):
            window = {"start": {"nanoseconds": time.time_ns()}, "duration": {"nanoseconds": self._window}}
            windows.append({"machine_ids": [machine], "unavailability": window})
            self._call("POST", "/maintenance/schedule", {"windows": windows})
        if machine not in self._status().get("down_machines", []):
            self._call("POST", "/machine/down", [machine])

    def undrain(self, host: Device) -> None:
        machine = machine_id(host)
        if machine in self._status().get("down_machines", []):
            self._call("POST", "/machine/up", [machine])
        windows = self._schedule()
        kept = []
        for w in windows:
            machines = [m for m in w.get("machine_ids", []) if m != machine]
            if machines:
                kept.append({**w, "machine_ids": machines})
        if kept != windows:
            self._call("POST", "/maintenance/schedule", {"windows": kept})

    def drained(self, host: Device) -> bool:
        return machine_id(host) in self._status().get("down_machines", [])


def from_sources(sources: Sources) -> MesosMaintenance:
    """Through the API the settings or Vault (secret/atlas/workloads/mesos) name."""
    api = sources.endpoint("mesos")
    return MesosMaintenance(RequestsTransport(api.url, api.token, api.ca_file))
