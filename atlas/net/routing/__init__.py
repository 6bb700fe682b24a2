"""How a site's fabric routes: the RoutingDesign seam, chosen per site by its custom field
`routing_design` in NetBox (empty: `ospf`).

A design says which adjacencies a working fabric has, how a switch is taken out of transit and
back (cost-out), and what a server that announces service addresses runs and how its state is read.
A switch platform renders and reads each design it supports (atlas.net.platforms); what both share
is `RoutingState`, the design-neutral reading of a switch's routing that verification and the
fabric runbook decide on. OSPF (ospf.py) is the first design.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Protocol

from atlas.core.model import Device, Site
from atlas.core.registry import Registry
from atlas.sot.schema import DEFAULT_ROUTING_DESIGN, ROUTING_DESIGN_FIELD

if TYPE_CHECKING:
    from atlas.net.render import HostIntent

SERVICE_INTERFACE = "anycast0"  # where a server's service addresses live; down = not announced


@dataclass(frozen=True)
class RoutingState:
    """A switch's routing as read from it, whatever the design: the adjacencies it has up and the
    routes it selected."""

    full_neighbours_on: frozenset[str]  # interfaces with an adjacency up (OSPF: Full)
    routes: Mapping[IPv4Network, frozenset[str]]  # selected routes -> the interfaces they leave by

    def leaving_by(self, ports: Iterable[str], destinations: Iterable[IPv4Network]) -> list[IPv4Network]:
        """The destinations whose route leaves by any of `ports`."""
        wanted = set(ports)
        return [d for d in destinations if self.routes.get(d, frozenset()) & wanted]


class RoutingDesign(Protocol):
    """What a routing design decides, on plain data; reading and rendering are the platform's."""

    @property
    def name(self) -> str:
        """As the site's custom field routing_design names it."""
        ...

    # --- switches -------------------------------------------------------------------------------
    def switch_variables(self) -> Mapping[str, object]:
        """What a platform's template for this design needs besides the switch's intent."""
        ...

    def adjacency_problems(
        self, device: Device, state: RoutingState, fabric_ports: Iterable[str]
    ) -> list[str]:
        """Each of `fabric_ports` whose adjacency is not up, named."""
        ...

    # --- cost-out -------------------------------------------------------------------------------
    @property
    def cost_out_field(self) -> str:
        """The switch's custom field in NetBox that records it is costed out."""
        ...

    def is_costed_out(self, device: Device) -> bool: ...

    def with_cost_out(
        self, site: Site, devices: Mapping[str, Device], name: str, cost_out: bool
    ) -> tuple[Site, dict[str, Device]]:
        """The site and devices as they will be once NetBox records switch `name` costed out (or in)."""
        ...

    # --- servers that route ---------------------------------------------------------------------
    def host_problems(self, host: HostIntent) -> list[str]:
        """Why the server's routing configuration cannot be rendered (empty: it can)."""
        ...

    def host_config(self, host: HostIntent) -> str | None:
        """The server's routing daemon's configuration; None for a server that does not route."""
        ...

    @property
    def host_facts_command(self) -> str:
        """A shell command, a constant, whose output is the routing part of a host's facts."""
        ...

    def host_drift(self, intended: str, facts: str, uplinks: Iterable[str]) -> list[str]:
        """How a routing server's state (`host_facts_command`'s output) differs from `intended`,
        its routing configuration, with an adjacency up on every one of `uplinks`."""
        ...


DESIGNS: Registry[RoutingDesign] = Registry(
    "routing design", f"the site's custom field {ROUTING_DESIGN_FIELD} in NetBox"
)


def design_name(site: Site) -> str:
    """The site's routing design as NetBox has it; the default when the field is empty."""
    value = site.custom_fields.get(ROUTING_DESIGN_FIELD)
    return str(value) if value else DEFAULT_ROUTING_DESIGN


def design_problem(site: Site) -> str | None:
    """Why the site's routing design cannot be used, or None: the line preflight lists."""
    return named_design_problem(site.name, design_name(site))


def named_design_problem(site: str, design: str) -> str | None:
    """`design_problem` for a site known by name, its design by `design_name`."""
    return DESIGNS.problem(f"site {site}", design)


def design_of(site: Site) -> RoutingDesign:
    """The site's routing design, or Refused naming the site and the value."""
    return DESIGNS.get(f"site {site.name}", design_name(site))


def default_design() -> RoutingDesign:
    """The design of a site whose custom field is empty."""
    return DESIGNS.get("Atlas", DEFAULT_ROUTING_DESIGN)


# The designs Atlas ships, registered on import (each module registers itself).
from atlas.net.routing import ospf as ospf  # noqa: E402
