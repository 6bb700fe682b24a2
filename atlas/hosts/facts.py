"""A server's baseline state read in one SSH command, compared with what the baseline playbook sets.

As pyinfra does with facts: read first, and run the playbook only on hosts that differ, so a converged
rack costs one short SSH session per host instead of a playbook run. The playbook stays the only thing
that changes a host; this module only reads. The command is a constant: nothing from NetBox reaches
the host's shell. It prints every file of the baseline's definition (atlas.hosts.files: the fixed
paths and patterns, each file with its mode and owner) and the live state those files make at boot:
addresses, the default route, kernel parameters, frr.service, and the routing as the site's routing
design reads it (atlas.net.routing; `design` omitted is the default design).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from atlas.hosts.files import FACTS_FILE as FACTS_FILE
from atlas.hosts.files import FRR_CONFIG as FRR_CONFIG
from atlas.hosts.files import PENDING_FILE, READ, owned
from atlas.hosts.files import SYSCTL_FILE as SYSCTL_FILE
from atlas.hosts.files import SYSCTLS as SYSCTLS
from atlas.net.intent import SERVICE_INTERFACE
from atlas.net.routing import RoutingDesign, default_design

FRR_SERVICE = "frr"  # Debian's frr.service
_SECTIONS = ("pending", "hostname", "sysctl", "addresses", "default", "frr-active", "frr-routing")
_FILE_END = "@end-of-file"
# Each file: "@file PATH MODE OWNER GROUP", its content as it is, a line break, the end marker.
_FILES = re.compile(
    rf"^@file (?P<path>\S+) (?P<mode>[0-7]+) (?P<owner>\S+) (?P<group>\S+)\n(?P<content>.*?)\n{_FILE_END}$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class FoundFile:
    """A file as the facts read found it."""

    content: str
    mode: int
    owner: str
    group: str


def facts_command(design: RoutingDesign | None = None) -> str:
    """The one command that reads a server's baseline state, its routing as `design` reads it."""
    files = (
        f'for f in {" ".join(READ)}; do [ -f "$f" ] || continue; '
        f'echo "@file $f $(stat -c \'%a %U %G\' "$f")"; cat "$f"; echo; echo {_FILE_END}; done'
    )
    return "; ".join(
        [
            files,
            f"echo @pending; cat {PENDING_FILE} 2>/dev/null",
            "echo @hostname; uname -n",
            f"echo @sysctl; sysctl {' '.join(SYSCTLS)} 2>/dev/null",
            "echo @addresses; ip -j -4 addr show",
            "echo @default; ip -j -4 route show default",
            f"echo @frr-active; systemctl is-active {FRR_SERVICE} 2>/dev/null",
            f"echo @frr-routing; {(design or default_design()).host_facts_command}",
            "true",
        ]
    )


def parse_sections(output: str) -> dict[str, str]:
    """The live sections of `facts_command`'s output, by name (the files are `parse_files`')."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _FILES.sub("", output).splitlines():
        if line.startswith("@") and line[1:] in _SECTIONS:
            current = sections.setdefault(line[1:], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(sections.get(name, [])) for name in _SECTIONS}


def parse_files(output: str) -> dict[str, FoundFile]:
    """The baseline's files the host has, by path, exactly as they are."""
    return {
        m["path"]: FoundFile(content=m["content"], mode=int(m["mode"], 8), owner=m["owner"], group=m["group"])
        for m in _FILES.finditer(output)
    }


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
    """Every way the host differs from the playbook's variables (atlas_*, from atlas.hosts.files);
    empty when converged. `output`: `facts_command(design)`'s. Files first (each named by its path),
    then live state that is not what the files make it."""
    drift = file_drift(intended["atlas_files"], parse_files(output))
    have = parse_sections(output)
    pending = have["pending"].split()
    if pending:
        drift.append(f"written by an earlier run and not yet applied: {', '.join(pending)}")
    if have["hostname"].strip() != intended["atlas_hostname"]:
        drift.append(f"hostname {have['hostname'].strip()!r}, intended {intended['atlas_hostname']!r}")
    live = _key_values(have["sysctl"])
    for key, value in intended["atlas_sysctls"].items():
        if live.get(key) != str(value):
            drift.append(f"sysctl {key}: {live.get(key)}, intended {value}")
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
    drift += _routing_drift(intended, have, links, design or default_design())
    return drift


def file_drift(intended: list[dict[str, str]], found: dict[str, FoundFile]) -> list[str]:
    """Each file of the definition that is missing or differs, and each file Atlas owns that the
    definition no longer lists (the playbook removes it), named by path."""
    drift = []
    for spec in intended:
        path, have = spec["path"], found.get(spec["path"])
        if have is None:
            drift.append(f"{path} is missing")
            continue
        if have.content != spec["content"]:
            drift.append(f"{path} differs")
        mode, owner, group = int(spec.get("mode", "0644"), 8), spec.get("owner"), spec.get("group")
        if have.mode != mode:
            drift.append(f"{path} mode {have.mode:04o}, intended {mode:04o}")
        if (have.owner, have.group) != (owner or "root", group or "root"):
            drift.append(
                f"{path} owner {have.owner}:{have.group}, intended {owner or 'root'}:{group or 'root'}"
            )
    listed = {spec["path"] for spec in intended}
    drift += [
        f"{path} is not in the baseline" for path in sorted(found) if owned(path) and path not in listed
    ]
    return drift


def _routing_drift(
    intended: dict[str, Any], have: dict[str, str], links: dict[str, Any], design: RoutingDesign
) -> list[str]:
    """Service addresses on their interface (up or down: that is the drain state) and, on a host that
    routes, frr.service active and its routing as the design reads it."""
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
        state = have["frr-active"].strip() or "unknown"
        if state != "active":
            drift.append(f"{FRR_SERVICE}.service is {state}")
        uplinks = [g["ifname"] for g in intended["atlas_gateways"]]
        drift += design.host_drift(config, have["frr-routing"], uplinks)
    return drift
