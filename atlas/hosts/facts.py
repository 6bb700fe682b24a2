"""A server's baseline state read in one SSH command, compared with what the baseline playbook sets.

As pyinfra does with facts: read first, and run the playbook only on hosts that differ, so a converged
rack costs one short SSH session per host instead of a playbook run. The playbook stays the only thing
that changes a host; this module only reads. The command is a constant: nothing from NetBox reaches
the host's shell. Its routing part, and what differs there, are the site's routing design's
(atlas.net.routing); `design` omitted is the default design.
"""

from __future__ import annotations

import json
from typing import Any

from atlas.net.intent import SERVICE_INTERFACE
from atlas.net.routing import RoutingDesign, default_design

SYSCTL_FILE = "/etc/sysctl.d/90-atlas.conf"
FACTS_FILE = "/etc/atlas/facts.json"
FRR_CONFIG = "/etc/frr/frr.conf"
SYSCTLS = {  # the baseline's kernel parameters
    "net.ipv4.fib_multipath_hash_policy": "1",  # spread flows over both leaves by L4 hash
    "net.ipv4.conf.all.rp_filter": "0",  # replies may come back over the other leaf
}
_SECTIONS = (
    "hostname",
    "sysctl-file",
    "sysctl",
    "addresses",
    "default",
    "facts",
    "frr",
    "frr-routing",
)


def facts_command(design: RoutingDesign | None = None) -> str:
    """The one command that reads a server's baseline state, its routing as `design` reads it."""
    return "; ".join(
        [
            "echo @hostname; cat /etc/hostname 2>/dev/null",
            f"echo @sysctl-file; cat {SYSCTL_FILE} 2>/dev/null",
            f"echo @sysctl; sysctl {' '.join(SYSCTLS)} 2>/dev/null",
            "echo @addresses; ip -j -4 addr show",
            "echo @default; ip -j -4 route show default",
            f"echo @facts; cat {FACTS_FILE} 2>/dev/null",
            f"echo @frr; cat {FRR_CONFIG} 2>/dev/null",
            f"echo @frr-routing; {(design or default_design()).host_facts_command}",
            "true",
        ]
    )


def parse_sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("@") and line[1:] in _SECTIONS:
            current = sections.setdefault(line[1:], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(sections.get(name, [])) for name in _SECTIONS}


def _key_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _gateways(routes: Any) -> list[tuple[str | None, str | None]]:
    hops: list[tuple[str | None, str | None]] = []
    for route in routes or []:
        for hop in route.get("nexthops", [route]):
            if "gateway" in hop:
                hops.append((hop["gateway"], hop.get("dev", route.get("dev"))))
    return sorted(hops)


def baseline_drift(intended: dict[str, Any], output: str, design: RoutingDesign | None = None) -> list[str]:
    """Every way the host differs from the playbook's variables (atlas_*); empty when converged.
    `output`: `facts_command(design)`'s."""
    have = parse_sections(output)
    drift = []
    if have["hostname"].strip() != intended["atlas_hostname"]:
        drift.append(f"hostname {have['hostname'].strip()!r}, intended {intended['atlas_hostname']!r}")
    live, saved = _key_values(have["sysctl"]), _key_values(have["sysctl-file"])
    for key, value in intended["atlas_sysctls"].items():
        if live.get(key) != str(value) or saved.get(key) != str(value):
            drift.append(f"sysctl {key}: {live.get(key)} (saved {saved.get(key)}), intended {value}")
    links = {link["ifname"]: link for link in _json(have["addresses"]) or []}
    for ifname, addresses in intended["atlas_addresses"].items():
        link = links.get(ifname, {})
        found = sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))
        if found != sorted(addresses):
            drift.append(f"{ifname} addresses {found}, intended {sorted(addresses)}")
        if "UP" not in link.get("flags", []):
            drift.append(f"{ifname} is down")
    want = sorted((g["gateway"], g["ifname"]) for g in intended["atlas_gateways"])
    if _gateways(_json(have["default"])) != want:
        drift.append(f"default route {_gateways(_json(have['default']))}, intended {want}")
    if _json(have["facts"]) != intended["atlas_facts"]:
        drift.append(f"{FACTS_FILE} differs")
    drift += _routing_drift(intended, have, links, design or default_design())
    return drift


def _routing_drift(
    intended: dict[str, Any], have: dict[str, str], links: dict[str, Any], design: RoutingDesign
) -> list[str]:
    """Service addresses on their interface (up or down: that is the drain state) and, on a host that
    routes, its FRR configuration and its routing as the design reads it."""
    drift = []
    want = sorted(intended.get("atlas_service_addresses", []))
    service = links.get(SERVICE_INTERFACE)
    found = (
        sorted(f"{a['local']}/{a['prefixlen']}" for a in service.get("addr_info", [])) if service else None
    )
    if (found or None) != (want or None):
        drift.append(f"{SERVICE_INTERFACE} addresses {found}, intended {want}")
    config = intended.get("atlas_frr_config")
    if config is not None:
        if have["frr"].strip() != config.strip():
            drift.append(f"{FRR_CONFIG} differs")
        uplinks = [g["ifname"] for g in intended["atlas_gateways"]]
        drift += design.host_drift(config, have["frr-routing"], uplinks)
    return drift
