"""Running against intended configuration, compared by hier-config under a platform's rules.

A platform says which lines carry no configuration (banners, separators, what cannot change at run
time) and which hier-config driver parses what is left; the comparison and the commands it yields
are the same for every platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hier_config import Platform, WorkflowRemediation, get_hconfig, get_hconfig_driver
from hier_config.models import MatchRule, NegationDefaultWithRule


class ComparisonRules(Protocol):
    """How a platform's configuration is compared: part of every switch platform."""

    @property
    def hier_platform(self) -> Platform:
        """hier-config's driver for the configuration's syntax."""
        ...

    def comparable(self, config: str) -> str:
        """`config` without the lines the comparison must ignore."""
        ...

    @property
    def negations(self) -> tuple[tuple[tuple[str, ...], str], ...]:
        """Lines the CLI takes back otherwise than by `no` and the line: (the starts of the line
        and of its parents, outermost first; what takes it back)."""
        ...


@dataclass(frozen=True)
class ConfigDiff:
    commands: tuple[str, ...]  # what to send, in order, blocks closed with `exit`
    summary: tuple[str, ...]  # one line per change, for reports

    @property
    def empty(self) -> bool:
        return not self.commands


def diff(running: str, intended: str, rules: ComparisonRules) -> ConfigDiff:
    driver = get_hconfig_driver(rules.hier_platform)
    driver.rules.negate_with.extend(
        NegationDefaultWithRule(match_rules=tuple(MatchRule(startswith=s) for s in starts), use=use)
        for starts, use in rules.negations
    )
    remediation = WorkflowRemediation(
        get_hconfig(driver, rules.comparable(running)), get_hconfig(driver, rules.comparable(intended))
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
