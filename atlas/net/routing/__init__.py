"""How a site's fabric routes: the RoutingDesign seam, chosen per site by its custom field
`routing_design` in NetBox (empty: `ospf`).

A design says which adjacencies a working fabric has, how a switch is taken out of transit and
back (cost-out), and what a server that announces service addresses runs and how its state is read.
A switch platform renders and reads each design it supports (atlas.net.platforms); what both share
is `RoutingState`, the design-neutral reading of a switch's routing that verification and the
fabric runbook decide on. OSPF (ospf.py) is the first design, eBGP (ebgp.py, RFC 7938) the second.
"""

from __future__ import annotations

from atlas.core.model import Site
from atlas.core.registry import Registry
from atlas.net.routing.design import RoutingDesign as RoutingDesign  # the seam, named with its registry
from atlas.sot.schema import DEFAULT_ROUTING_DESIGN, ROUTING_DESIGN_FIELD

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


# The designs Atlas ships.
from atlas.net.routing.ebgp import EBGP  # noqa: E402
from atlas.net.routing.ospf import OSPF  # noqa: E402

DESIGNS.register(OSPF.name, OSPF)
DESIGNS.register(EBGP.name, EBGP)
