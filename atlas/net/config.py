"""Running against intended configuration, compared by hier-config.

FRR's vtysh speaks an IOS-like dialect, so hier-config's IOS driver parses it once the lines that
carry no configuration are dropped (banners, `!`, `exit`, `end`) along with the ones that cannot be
changed at run time or that the lab sets outside FRR (version, defaults, hostname).
"""

from __future__ import annotations

from dataclasses import dataclass

from hier_config import Platform, WorkflowRemediation, get_hconfig

_IGNORED_PREFIXES = (
    "Building configuration",
    "Current configuration",
    "frr version",
    "frr defaults",
    "hostname ",
    "service integrated-vtysh-config",
    "no ipv6 forwarding",
    "end",
)
_SEPARATORS = {"!", "exit", "exit-vrf", "exit-address-family"}


def comparable(config: str) -> str:
    lines = []
    for line in config.splitlines():
        stripped = line.strip()
        if not stripped or stripped in _SEPARATORS or stripped.startswith(_IGNORED_PREFIXES):
            continue
        lines.append(line.rstrip())
    return "\n".join(lines)


@dataclass(frozen=True)
class ConfigDiff:
    commands: tuple[str, ...]  # what to send, in order, blocks closed with `exit`
    summary: tuple[str, ...]  # one line per change, for reports

    @property
    def empty(self) -> bool:
        return not self.commands


def diff(running: str, intended: str) -> ConfigDiff:
    remediation = WorkflowRemediation(
        get_hconfig(Platform.CISCO_IOS, comparable(running)),
        get_hconfig(Platform.CISCO_IOS, comparable(intended)),
    ).remediation_config
    commands: list[str] = []
    summary: list[str] = []
    for top in remediation.children:
        commands.append(top.text)
        if top.children:
            for child in top.all_children_sorted():
                commands.append(" " * 2 * (child.depth() - 1) + child.text)
                summary.append(f"{top.text}: {child.text}")
            commands.append("exit")
        else:
            summary.append(top.text)
    return ConfigDiff(commands=tuple(commands), summary=tuple(summary))
