"""FRR, the first switch platform (NetBox platform `frr`): vtysh's IOS-like CLI over SSH.

- Configuration: a Jinja2 template per routing design, templates/frr/<design>.j2 (and
  <design>-host.j2 for a server that routes: servers run FRR too). The template sees only checked
  values (atlas.net.render).
- Reading: show commands in one `vtysh -c ... -c ...` over an exec channel; routing state from
  FRR's JSON answers.
- Comparison: hier-config's IOS driver parses vtysh's configuration once the lines that carry no
  configuration are dropped (banners, `!`, `exit`, `end`) along with the ones that cannot be
  changed at run time or that the lab sets outside FRR (version, defaults, hostname).
- Pushing: netmiko has no FRR driver; cisco_ios is the one measured to work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from hier_config import Platform

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device
from atlas.net.intent import RoutingState, SwitchIntent
from atlas.net.sessions import ssh_exec

if TYPE_CHECKING:
    from atlas.net.routing.design import RoutingDesign

TEMPLATES = Path(__file__).with_name("templates") / "frr"

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

# vtysh answers a bad line with one of these; netmiko raises on them instead of pushing on.
CLI_ERRORS = r"% ?(Unknown command|Ambiguous command|Command incomplete|Invalid|Unknown|Can't|Cannot)"
# Which FRR daemon takes each kind of line: with that daemon down, vtysh drops the lines and a push
# would leave the switch half-configured.
DAEMON_OF_LINE = {"router ospf": "ospfd", "ip ospf": "ospfd", "ip route": "staticd", "router bgp": "bgpd"}


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 - device configs, not HTML; every value is checked before
)


def template(name: str) -> jinja2.Template:
    """One of FRR's templates by file name (`ospf.j2`, `ospf-host.j2`)."""
    return _env.get_template(name)


def comparable(config: str) -> str:
    lines = []
    for line in config.splitlines():
        stripped = line.strip()
        if not stripped or stripped in _SEPARATORS or stripped.startswith(_IGNORED_PREFIXES):
            continue
        lines.append(line.rstrip())
    return "\n".join(lines)


def vtysh(*commands: str) -> str:
    """The shell command that runs `commands` in one vtysh (each start costs ~25 ms). Atlas's
    commands are constants without quotes."""
    for command in commands:
        if "'" in command or not command.startswith("show "):
            raise ValueError(f"not a plain show command: {command!r}")
    return "vtysh " + " ".join(f"-c '{c}'" for c in commands)


def missing_daemons(intended: str, show_daemons: str) -> list[str]:
    """The daemons `intended` needs that FRR's `show daemons` does not list as running."""
    lines = [line.strip() for line in intended.splitlines()]
    needed = {"zebra"} | {d for start, d in DAEMON_OF_LINE.items() if any(x.startswith(start) for x in lines)}
    return sorted(needed - set(show_daemons.split()))


# --- routing state from FRR's JSON ------------------------------------------------------------------
def split_json(output: str, count: int) -> tuple[list[Any], str]:
    """`count` JSON documents at the start of `output` (one vtysh's answers to as many `... json`
    commands), and whatever follows them; ValueError when they are not there."""
    decoder = json.JSONDecoder()
    rest = output.lstrip()
    docs = []
    for i in range(count):
        if i:
            rest = rest.lstrip()
        doc, end = decoder.raw_decode(rest)
        docs.append(doc)
        rest = rest[end:]
    return docs, rest.lstrip("\n")


def ospf_full_interfaces(ospf_neighbours: dict[str, Any]) -> frozenset[str]:
    """The interfaces with a Full adjacency in `show ip ospf neighbor json`."""
    found = set()
    for entries in ospf_neighbours.get("neighbors", {}).values():
        for n in entries:
            state = str(n.get("nbrState", n.get("state", "")))
            if state.startswith("Full"):
                found.add(str(n.get("ifaceName", "")).split(":")[0])
    return frozenset(found)


def bgp_established_interfaces(summary: dict[str, Any]) -> frozenset[str]:
    """The interfaces of unnumbered sessions Established in `show bgp summary json` (a numbered
    session's peer is an address, not a port)."""
    peers = (summary or {}).get("ipv4Unicast", {}).get("peers", {})
    return frozenset(
        str(p) for p, s in peers.items() if s.get("state") == "Established" and s.get("idType") == "interface"
    )


def route_table(routes: dict[str, Any]) -> dict[IPv4Network, frozenset[str]]:
    """Selected, installed routes of `show ip route json` -> the interfaces they leave by."""
    table = {}
    for prefix, entries in routes.items():
        for e in entries:
            if e.get("selected") and e.get("installed", True):
                hops = e.get("nexthops", [])
                table[IPv4Network(prefix)] = frozenset(
                    str(h["interfaceName"]) for h in hops if h.get("active") and "interfaceName" in h
                )
    return table


@dataclass(frozen=True)
class RoutingRead:
    """How FRR reads one design's routing state: the commands, and their JSON answers parsed."""

    commands: tuple[str, ...]
    parse: Callable[[list[Any]], RoutingState]


ROUTING_READS: Mapping[str, RoutingRead] = {
    "ospf": RoutingRead(
        commands=("show ip ospf neighbor json", "show ip route json"),
        parse=lambda docs: RoutingState(
            full_neighbours_on=ospf_full_interfaces(docs[0]), routes=route_table(docs[1])
        ),
    ),
    "ebgp": RoutingRead(
        commands=("show bgp summary json", "show ip route json"),
        parse=lambda docs: RoutingState(
            full_neighbours_on=bgp_established_interfaces(docs[0]), routes=route_table(docs[1])
        ),
    ),
}


class Frr:
    """FRR as a SwitchPlatform."""

    name = "frr"
    hier_platform = Platform.CISCO_IOS
    # FRR takes back an AS-path prepend and a community by the command alone (`no set as-path
    # prepend 65001 65001` is refused: it takes one ASN at most)
    negations = (
        (("route-map ", "set as-path prepend "), "no set as-path prepend"),
        (("route-map ", "set community "), "no set community"),
    )
    device_type = "cisco_ios"
    cli_errors = CLI_ERRORS
    save_indicators = ("saved", "[OK]")
    running_config_command = "show running-config"
    daemons_command = "show daemons"

    def comparable(self, config: str) -> str:
        return comparable(config)

    def supports(self, design: str) -> bool:
        return design in ROUTING_READS and (TEMPLATES / f"{design}.j2").is_file()

    def render(self, intent: SwitchIntent, design: RoutingDesign) -> str:
        return template(f"{design.name}.j2").render(
            device=intent.device,
            fabric_links=intent.fabric_links,
            server_links=intent.server_links,
            border_links=intent.border_links,
            server_routes=intent.server_routes,
            cost_out=intent.cost_out,
            announced=intent.announced,
            **design.switch_variables(),
        )

    def show(self, device: Device, cred: Credential, *commands: str, timeout: float = 15.0) -> str:
        return ssh_exec(device, cred, vtysh(*commands), timeout=timeout)

    def _read(self, design: RoutingDesign) -> RoutingRead:
        read = ROUTING_READS.get(design.name)
        if read is None:
            raise Refused([f"switch platform {self.name} does not read routing design {design.name!r}"])
        return read

    def routing_commands(self, design: RoutingDesign) -> tuple[str, ...]:
        return self._read(design).commands

    def parse_routing(self, design: RoutingDesign, output: str) -> tuple[RoutingState, str]:
        read = self._read(design)
        docs, rest = split_json(output, len(read.commands))
        return read.parse(docs), rest

    def daemons_problem(self, intended: str, daemons: str) -> str | None:
        missing = missing_daemons(intended, daemons)
        if not missing:
            return None
        return (
            f"FRR's {', '.join(missing)} not running (running: {daemons.strip() or 'none'}); nothing "
            "pushed: restart FRR on the switch, then re-run"
        )


FRR = Frr()
