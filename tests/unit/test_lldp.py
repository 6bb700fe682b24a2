import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from atlas.core.model import Cable, Endpoint
from atlas.net.intent import RoutingState
from atlas.net.lldp import check_cabling, parse_neighbours
from atlas.net.platforms.frr import FRR
from atlas.net.routing.ospf import OSPF

DATA = Path(__file__).parent / "data"


def parse_routing(output: str) -> tuple[RoutingState, str]:
    return FRR.parse_routing(OSPF, output)


def ep(text: str) -> Endpoint:
    device, _, port = text.partition(":")
    return Endpoint(device=device, interface=port)


def cable(a: str, b: str) -> Cable:
    return Cable(a=ep(a), b=ep(b))


def test_json0_from_a_lab_leaf_parses_into_neighbours() -> None:
    doc = json.loads((DATA / "lldp_fra1-r01-leaf1.json").read_text())
    assert parse_neighbours(doc) == {
        "swp1": ep("fra1-spine1:swp1"),
        "swp2": ep("fra1-spine2:swp1"),
        "swp3": ep("fra1-r01-cmp1:eth1"),
        "swp4": ep("fra1-r01-cmp2:eth1"),
        "swp5": ep("fra1-r01-sto1:eth1"),
    }


def test_matching_cabling_has_no_problems() -> None:
    cables = [cable("leaf1:swp1", "spine1:swp1"), cable("leaf1:swp2", "spine2:swp1")]
    observed = {"leaf1": {"swp1": ep("spine1:swp1"), "swp2": ep("spine2:swp1")}}
    assert check_cabling(cables, observed) == []


def test_swapped_missing_and_unexpected_links_are_named_by_device_and_port() -> None:
    cables = [
        cable("leaf1:swp1", "spine1:swp1"),
        cable("leaf1:swp2", "spine2:swp1"),
        cable("leaf1:swp3", "srv1:eth1"),
    ]
    observed = {"leaf1": {"swp1": ep("spine2:swp1"), "swp2": ep("spine1:swp1"), "swp7": ep("srv9:eth1")}}
    problems = [str(p) for p in check_cabling(cables, observed)]
    assert problems == [
        "leaf1:swp1: NetBox cables it to spine1:swp1, LLDP sees spine2:swp1",
        "leaf1:swp2: NetBox cables it to spine2:swp1, LLDP sees spine1:swp1",
        "leaf1:swp7: LLDP sees srv9:eth1, NetBox has no cable there",
        "leaf1:swp3: NetBox cables it to srv1:eth1, LLDP sees nothing",
    ]


def test_a_switchs_routing_and_running_config_come_apart_from_one_vtysh() -> None:
    """`vtysh -c` of FRR's OSPF routing commands then `show running-config`, as a lab leaf answered it."""
    state, running = parse_routing((DATA / "vtysh_fra1-r02-leaf1_state.txt").read_text())
    assert state.full_neighbours_on == {"swp1", "swp2", "swp3", "swp4"}
    assert IPv4Network("198.19.16.2/32") in state.routes  # fra1-spine1's loopback
    assert state.routes[IPv4Network("198.19.16.2/32")] == {"swp1"}
    assert running.startswith("Building configuration...") and running.rstrip().endswith("\nend")
    assert "router ospf" in running


def test_routing_that_is_not_there_is_an_error_not_an_empty_table() -> None:
    with pytest.raises(ValueError):
        parse_routing("% ospfd is not running\n")
