"""supervisord as a host's service manager: programs in /etc/supervisor/conf.d, driven by the
playbooks' tasks in playbooks/services/supervisord/ (FRR's daemons through the playbooks' own
module atlas_supervised, over supervisord's RPC socket), read with `supervisorctl status`."""

from __future__ import annotations

import re

from atlas.hosts.services import ServiceState

# supervisorctl status: "NAME  STATE  DETAIL", one program a line (a group's as group:name)
_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)(?:\s+(?P<detail>.*?))?\s*$")
STATES = {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}


class Supervisord:
    name = "supervisord"
    # supervisorctl exits non-zero when a program is not running: the states say which
    status_command = "supervisorctl status 2>/dev/null; true"

    def playbook_variables(self) -> dict[str, str]:
        return {"atlas_service_manager": self.name}

    def parse_status(self, output: str) -> dict[str, ServiceState]:
        found = {}
        for line in output.splitlines():
            match = _LINE.match(line)
            if match is None or match["state"] not in STATES:
                continue  # supervisorctl's own complaints (no socket, refused): no program
            found[match["name"]] = ServiceState(
                name=match["name"],
                state=match["state"],
                running=match["state"] == "RUNNING",
                detail=match["detail"] or "",
            )
        return found
