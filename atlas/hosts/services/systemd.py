"""systemd as a host's service manager: units from the host's packages (Debian's frr.service,
ceph-osd@.service) and the playbooks' own, driven by the playbooks' tasks in playbooks/services/systemd/,
read with `systemctl list-units`."""

from __future__ import annotations

import re

from atlas.hosts.services import ServiceState

# systemctl list-units --plain --no-legend --full: "UNIT LOAD ACTIVE SUB DESCRIPTION", one unit a line
_LINE = re.compile(
    r"^(?P<unit>\S+)\.service\s+(?P<load>\S+)\s+(?P<active>\S+)\s+(?P<sub>\S+)(?:\s+(?P<description>.*?))?\s*$"
)
ACTIVE_STATES = {"active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance"}


class Systemd:
    name = "systemd"
    # every service unit loaded, running or not; a constant, with nothing for the shell to expand
    status_command = "systemctl list-units --all --type=service --no-legend --plain --full --no-pager"

    def playbook_variables(self) -> dict[str, str]:
        return {"atlas_service_manager": self.name}

    def parse_status(self, output: str) -> dict[str, ServiceState]:
        """By unit name without `.service` (`frr`, `ceph-osd@3`); a unit referenced but not installed
        (load state not-found) is no service of the host's."""
        found = {}
        for line in output.splitlines():
            match = _LINE.match(line.strip())
            if match is None or match["active"] not in ACTIVE_STATES or match["load"] == "not-found":
                continue
            found[match["unit"]] = ServiceState(
                name=match["unit"],
                state=match["active"],
                running=match["active"] == "active" and match["sub"] == "running",
                detail=f"{match['sub']}" + (f": {match['description']}" if match["description"] else ""),
            )
        return found
