"""Kinds of switch: the SwitchPlatform seam, chosen per device by its platform in NetBox (the
platform's slug, `Device.platform`).

A platform is everything Atlas must know to configure and read one kind of switch: its
configuration template for each routing design it supports, the commands that read it and how
their answers parse, the rules by which its configuration is compared, how a change is pushed and
saved and how the CLI says it refused one, and which daemons a configuration needs. The generic
machinery (atlas.net.sessions, config, switch, verify) works through it. FRR (frr.py) is the first;
its templates are under templates/frr/, one per routing design.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from atlas.core.model import Credential, Device
from atlas.core.registry import Registry
from atlas.net.config import ComparisonRules
from atlas.net.intent import RoutingState, SwitchIntent

if TYPE_CHECKING:
    from atlas.net.routing.design import RoutingDesign


class SwitchPlatform(ComparisonRules, Protocol):
    """One kind of switch, as Atlas configures and reads it."""

    @property
    def name(self) -> str:
        """The platform's slug in NetBox."""
        ...

    # --- configuration --------------------------------------------------------------------------
    def supports(self, design: str) -> bool:
        """Whether the platform has a configuration template and routing reads for `design`."""
        ...

    def render(self, intent: SwitchIntent, design: RoutingDesign) -> str:
        """The switch's whole intended configuration, from its design's template."""
        ...

    # --- reading --------------------------------------------------------------------------------
    @property
    def running_config_command(self) -> str: ...

    def show(self, device: Device, cred: Credential, *commands: str, timeout: float = 15.0) -> str:
        """Read commands' answers, one after another, over an exec channel (no interactive CLI)."""
        ...

    def routing_commands(self, design: RoutingDesign) -> tuple[str, ...]:
        """The read commands whose answers `parse_routing` turns into the design's routing state."""
        ...

    def parse_routing(self, design: RoutingDesign, output: str) -> tuple[RoutingState, str]:
        """The routing state at the start of `output` (the answers to `routing_commands`), and
        whatever follows it; ValueError when the answers are not there (a routing daemon down)."""
        ...

    # --- pushing and saving ---------------------------------------------------------------------
    @property
    def device_type(self) -> str:
        """netmiko's driver for the platform's CLI."""
        ...

    @property
    def cli_errors(self) -> str:
        """A regex matching the CLI's answer to a line it refuses: netmiko stops the push on it."""
        ...

    @property
    def save_indicators(self) -> tuple[str, ...]:
        """One of these in the answer to saving: the configuration was saved."""
        ...

    @property
    def daemons_command(self) -> str:
        """The read command that lists the platform's running daemons."""
        ...

    def daemons_problem(self, intended: str, daemons: str) -> str | None:
        """Why `intended` cannot be pushed with the daemons `daemons_command` lists (None: it can):
        a daemon that is down drops its lines and would leave the switch half-configured."""
        ...


PLATFORMS: Registry[SwitchPlatform] = Registry("switch platform", "the device's platform in NetBox")


def platform_problem(device: Device) -> str | None:
    """Why the device's platform cannot be used, or None: the line preflight lists."""
    return PLATFORMS.problem(device.name, device.platform)


def platform_of(device: Device) -> SwitchPlatform:
    """The device's platform, or Refused naming the device and the value."""
    return PLATFORMS.get(device.name, device.platform)


# The platforms Atlas ships.
from atlas.net.platforms.frr import FRR  # noqa: E402

PLATFORMS.register(FRR.name, FRR)
