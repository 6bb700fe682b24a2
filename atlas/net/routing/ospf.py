"""OSPF, the first routing design (site custom field routing_design empty or `ospf`): area 0 on
point-to-point fabric links, loopbacks and servers' routes announced, fast timers.

- Adjacencies: every fabric port of a switch has a Full neighbour.
- Cost-out: a switch whose custom field `ospf_cost_out` is true renders `max-metric router-lsa
  administrative` (the platform's template does), so it carries no transit traffic while another
  path exists; the field is part of the intent, so the sweep and fabric-apply keep it.
- Servers that announce service addresses run FRR with OSPF to their leaves as stub routers
  (templates/frr/ospf-host.j2 of the FRR platform); their facts are OSPF's neighbours and FRR's
  running configuration, read in one vtysh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atlas.core.model import Device, Site
from atlas.core.safety import name_problem
from atlas.net.config import diff
from atlas.net.intent import HostIntent, SwitchIntent
from atlas.net.platforms import frr
from atlas.net.routing.design import FieldDesign
from atlas.net.routing.ebgp import Timers as BgpTimers
from atlas.sot.schema import COST_OUT_FIELD

HOST_TEMPLATE = "ospf-host.j2"
# One vtysh on the host (each start costs ~25 ms): the adjacencies as JSON, then the configuration.
HOST_FACTS_COMMAND = frr.vtysh("show ip ospf neighbor json", "show running-config") + " 2>/dev/null"


@dataclass(frozen=True)
class Timers:
    """OSPF's timers on fabric and server links, in seconds: a lost neighbour is noticed in `dead`."""

    hello: int = 1
    dead: int = 4


class Ospf(FieldDesign):
    """OSPF as a RoutingDesign."""

    name = "ospf"
    down = "OSPF adjacency is not Full"
    router_id = "OSPF router id"
    cost_out_field = COST_OUT_FIELD
    host_facts_command = HOST_FACTS_COMMAND
    daemons = ("zebra", "ospfd")  # staticd runs too: FRR's init always starts it

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()

    # --- the plan in NetBox ---------------------------------------------------------------------
    def plan_problems(self, site: Site, devices: Iterable[Device], peers: Mapping[str, Device]) -> list[str]:
        return []  # OSPF needs nothing beyond the address plan

    # --- switches -------------------------------------------------------------------------------
    def switch_variables(self) -> Mapping[str, object]:
        # a switch at the border to an eBGP site peers with it as an eBGP switch does
        return {"timers": self.timers, "bgp_timers": BgpTimers()}

    def switch_problems(self, intent: SwitchIntent) -> list[str]:
        if intent.border_links and not intent.announced:
            return [
                f"{intent.device.name}: the site has no loopback prefix in NetBox: its border would carry nothing"
            ]
        return []

    # --- servers that route ---------------------------------------------------------------------
    def host_problems(self, host: HostIntent) -> list[str]:
        if not host.device.anycast:
            return []
        problems = [name_problem(f"{host.device.name} interface", u) for u in host.uplinks]
        return self.announcing_problems(host) + [p for p in problems if p]

    def host_config(self, host: HostIntent) -> str | None:
        """OSPF on every cabled uplink, the service interface passive; None for a server that
        announces nothing (its loopback is a static route on its leaves)."""
        if not host.device.anycast:
            return None
        return frr.template(HOST_TEMPLATE).render(
            device=host.device,
            uplinks=host.uplinks,
            service_interface=host.service_interface,
            timers=self.timers,
        )

    def host_drift(self, intended: str, facts: str, uplinks: Iterable[str]) -> list[str]:
        neighbours, running = split_host_facts(facts)
        if not running.strip():
            return ["FRR is not running"]
        drift = [f"FRR running: {line}" for line in diff(running, intended, frr.FRR).summary]
        full = frr.ospf_full_interfaces(neighbours or {})
        drift += [
            f"OSPF adjacency on {uplink} is not Full" for uplink in sorted(uplinks) if uplink not in full
        ]
        return drift


def split_host_facts(text: str) -> tuple[Any, str]:
    """HOST_FACTS_COMMAND's output: OSPF's neighbours as JSON, then the running configuration; no
    JSON when ospfd does not answer, nothing at all when FRR is not running."""
    try:
        [neighbours], running = frr.split_json(text, 1)
    except ValueError:
        return None, text
    return neighbours, running


OSPF = Ospf()
