"""Rendering against golden files (scrapli-style), and hier-config diffs under FRR's rules against a
lab switch's real running configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.config import ConfigDiff
from atlas.net.config import diff as diff_under
from atlas.net.platforms.frr import FRR, comparable, missing_daemons
from atlas.net.render import RenderError, render, render_host, switch_intent
from atlas.sot.topology import load_topology

GOLDEN = Path(__file__).parent / "golden"


def diff(running: str, intended: str) -> ConfigDiff:
    return diff_under(running, intended, FRR)


def intended(device: str) -> str:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    peers = {d.name: d for d in topo.all_devices()}
    d = site.device(device)
    assert d is not None
    return render(switch_intent(site, d, peers))


@pytest.mark.parametrize("device", ["fra1-r01-leaf1", "fra1-spine1"])
def test_rendered_config_matches_the_golden_file(device: str) -> None:
    assert intended(device) == (GOLDEN / f"{device}.frr").read_text()


def test_a_leaf_routes_to_every_server_behind_it() -> None:
    config = intended("fra1-r01-leaf1")
    assert config.count("ip route 198.19.0.") == 3
    assert " redistribute static" in config


def test_the_running_config_of_a_converged_switch_has_no_diff() -> None:
    """The golden running config was read from a lab leaf after a bring-up: FRR reorders lines,
    adds `exit` and `!`, and the comparison must see through all of it."""
    running = (GOLDEN / "fra1-r01-leaf1.running").read_text()
    assert diff(running, intended("fra1-r01-leaf1")).empty


def test_a_blank_switch_gets_the_whole_config_in_blocks() -> None:
    d = diff("frr version 8.4.4\nfrr defaults traditional\nhostname x\n!\nend\n", intended("fra1-r01-leaf1"))
    assert d.commands[0] == "interface lo" and d.commands[4] == "exit"
    assert "router ospf" in d.commands
    assert "ip route 198.19.0.6/32 198.18.64.9" in d.commands


def test_only_the_drift_is_pushed_and_stale_lines_are_removed() -> None:
    running = (GOLDEN / "fra1-r01-leaf1.running").read_text()
    drifted = running.replace(" ip ospf hello-interval 1", " ip ospf hello-interval 10", 1)
    drifted = drifted.replace("router ospf\n", "router ospf\n passive-interface default\n", 1)
    d = diff(drifted, intended("fra1-r01-leaf1"))
    assert d.summary == (
        "interface swp1: no ip ospf hello-interval 10",
        "interface swp1: ip ospf hello-interval 1",
        "router ospf: no passive-interface default",
    )


def test_volatile_lines_are_not_compared() -> None:
    assert comparable("Building configuration...\nfrr version 8.4.4\n!\nhostname a\nexit\nend\n") == ""


def test_a_description_with_a_command_never_renders() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    leaf = site.device("fra1-r01-leaf1")
    assert leaf is not None
    bad = leaf.model_copy(
        update={
            "interfaces": tuple(
                i.model_copy(update={"description": "x\nwrite erase"}) if i.name == "swp3" else i
                for i in leaf.interfaces
            )
        }
    )
    with pytest.raises(RenderError, match="control characters"):
        render(switch_intent(site, bad, {d.name: d for d in topo.all_devices()}))


def test_a_server_that_announces_anycast_runs_ospf_as_a_stub_router() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    compute, storage = site.device("fra1-r01-cmp1"), site.device("fra1-r01-sto1")
    assert compute is not None and storage is not None
    assert render_host(site, compute) == (GOLDEN / "fra1-r01-cmp1.frr").read_text()
    assert render_host(site, storage) is None  # announces nothing: static routes only
    leaf = intended("fra1-r01-leaf1")
    assert (
        "to fra1-r01-cmp1:eth1\n ip address 198.18.64.8/31\n ip ospf area 0\n ip ospf network point-to-point"
        in leaf
    )
    assert "to fra1-r01-sto1:eth1\n ip address 198.18.64.16/31\n ip ospf area 0\n ip ospf passive" in leaf


@pytest.mark.parametrize(
    ("device", "running", "missing"),
    [
        ("fra1-r01-leaf1", " zebra ospfd staticd\n", []),
        ("fra1-r01-leaf1", " zebra staticd\n", ["ospfd"]),  # as `show daemons` prints after a crash
        ("fra1-r01-leaf1", "", ["ospfd", "staticd", "zebra"]),
        ("fra1-spine1", " zebra ospfd\n", []),  # a spine routes no server: staticd has nothing to do
    ],
)
def test_a_push_needs_every_daemon_its_lines_go_to(device: str, running: str, missing: list[str]) -> None:
    assert missing_daemons(intended(device), running) == missing
