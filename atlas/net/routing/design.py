"""The RoutingDesign protocol: what a routing design decides, on plain data (atlas.net.routing
holds the registry of the designs Atlas ships)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from atlas.core.model import Device, Site
from atlas.core.safety import name_problem
from atlas.net.intent import HostIntent, RoutingState, SwitchIntent


class RoutingDesign(Protocol):
    """What a routing design decides, on plain data; reading and rendering are the platform's."""

    @property
    def name(self) -> str:
        """As the site's custom field routing_design names it."""
        ...

    # --- the plan in NetBox ---------------------------------------------------------------------
    def plan_problems(self, site: Site, devices: Iterable[Device], peers: Mapping[str, Device]) -> list[str]:
        """What the design needs from NetBox that `devices` of `site` (with `peers`, every device
        they may be cabled to) lack, each named: checked before anything is touched."""
        ...

    # --- switches -------------------------------------------------------------------------------
    def switch_variables(self) -> Mapping[str, object]:
        """What a platform's template for this design needs besides the switch's intent."""
        ...

    def switch_problems(self, intent: SwitchIntent) -> list[str]:
        """Why the switch's configuration cannot be rendered by this design (empty: it can)."""
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
    def daemons(self) -> tuple[str, ...]:
        """FRR's daemons a routing server runs for this design (its /etc/frr/daemons)."""
        ...

    @property
    def host_facts_command(self) -> str:
        """A shell command, a constant, whose output is the routing part of a host's facts."""
        ...

    def host_drift(self, intended: str, facts: str, uplinks: Iterable[str]) -> list[str]:
        """How a routing server's state (`host_facts_command`'s output) differs from `intended`,
        its routing configuration, with an adjacency up on every one of `uplinks`."""
        ...


def with_custom_field(
    site: Site, devices: Mapping[str, Device], name: str, field: str, value: object
) -> tuple[Site, dict[str, Device]]:
    """The site and devices as they will be once NetBox holds `value` in device `name`'s `field`."""
    device = devices[name]
    changed = device.model_copy(update={"custom_fields": device.custom_fields | {field: value}})
    site = site.model_copy(update={"devices": tuple(changed if d.name == name else d for d in site.devices)})
    return site, {**devices, name: changed}


class FieldDesign:
    """What designs share: a cost-out recorded in a boolean custom field of the switch
    (`cost_out_field`), an adjacency that is either up or not (`down` names it), and a routing
    server's first needs (a safe name, a loopback for its router id: `router_id` names the design)."""

    cost_out_field: str
    down: str  # "OSPF adjacency is not Full"
    router_id: str  # "OSPF router id"

    def adjacency_problems(
        self, device: Device, state: RoutingState, fabric_ports: Iterable[str]
    ) -> list[str]:
        return [
            f"{device.name}:{port}: {self.down}"
            for port in sorted(fabric_ports)
            if port not in state.full_neighbours_on
        ]

    def is_costed_out(self, device: Device) -> bool:
        return device.custom_fields.get(self.cost_out_field) is True

    def with_cost_out(
        self, site: Site, devices: Mapping[str, Device], name: str, cost_out: bool
    ) -> tuple[Site, dict[str, Device]]:
        return with_custom_field(site, devices, name, self.cost_out_field, cost_out)

    def announcing_problems(self, host: HostIntent) -> list[str]:
        """A routing server's name and loopback problems (none for one that announces nothing)."""
        d = host.device
        if not d.anycast:
            return []
        problems = [name_problem(f"{d.name} name", d.name)]
        if d.loopback is None:
            problems.append(f"{d.name}: announcing anycast addresses needs a loopback ({self.router_id})")
        return [p for p in problems if p]
