"""Cabling checked from real LLDP against NetBox cables.

Neighbours come from `lldpcli -f json0 show neighbors` (json0 keeps every value a list, where plain
json collapses single neighbours into objects). The comparison is pure: observed neighbours per
device against the cables NetBox holds, naming every miscabled, missing and unexpected link.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from atlas.core.model import Cable, Endpoint

Neighbours = dict[str, Endpoint]  # local port -> what LLDP sees at the other end


class CablingProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # miscabled | missing | unexpected
    port: Endpoint
    expected: Endpoint | None
    seen: Endpoint | None

    def __str__(self) -> str:
        if self.kind == "miscabled":
            return f"{self.port}: NetBox cables it to {self.expected}, LLDP sees {self.seen}"
        if self.kind == "missing":
            return f"{self.port}: NetBox cables it to {self.expected}, LLDP sees nothing"
        return f"{self.port}: LLDP sees {self.seen}, NetBox has no cable there"


def parse_neighbours(doc: dict[str, Any]) -> Neighbours:
    found: Neighbours = {}
    for lldp in doc.get("lldp", []):
        for iface in lldp.get("interface", []):
            chassis, port = iface["chassis"][0], iface["port"][0]
            found[iface["name"]] = Endpoint(
                device=chassis["name"][0]["value"], interface=port["id"][0]["value"]
            )
    return found


def check_cabling(
    cables: list[Cable] | tuple[Cable, ...],
    observed: dict[str, Neighbours],
) -> list[CablingProblem]:
    """Compares the ports of the devices in `observed` (all that were asked) with `cables`."""
    expected: dict[Endpoint, Endpoint] = {}
    for c in cables:
        expected[c.a], expected[c.b] = c.b, c.a
    problems = []
    for device, neighbours in sorted(observed.items()):
        for port_name, seen in sorted(neighbours.items()):
            port = Endpoint(device=device, interface=port_name)
            want = expected.get(port)
            if want is None:
                problems.append(CablingProblem(kind="unexpected", port=port, expected=None, seen=seen))
            elif want != seen:
                problems.append(CablingProblem(kind="miscabled", port=port, expected=want, seen=seen))
        for port, want in sorted(expected.items(), key=lambda kv: str(kv[0])):
            if port.device == device and port.interface not in neighbours:
                problems.append(CablingProblem(kind="missing", port=port, expected=want, seen=None))
    return problems
