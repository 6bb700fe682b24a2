"""The switch platform seam on plain data: the registry chosen by the NetBox platform, a platform Atlas
does not know refused in bring-up preflight (device and value named) and in fabric-apply, left
unchecked by the sweep with the reason, and FRR's own rules: comparison, daemons, reads."""

from __future__ import annotations

import pytest

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, Site
from atlas.core.run import targets
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.config import diff
from atlas.net.platforms import PLATFORMS, platform_of, platform_problem
from atlas.net.platforms.frr import FRR, vtysh
from atlas.net.render import RenderError, render, switch_intent
from atlas.net.routing.ospf import OSPF
from atlas.runbooks.bringup import RackScope, preflight
from atlas.runbooks.fabric import config_problems
from atlas.runbooks.site import SiteView
from atlas.runbooks.sweep import Area, compare_running
from atlas.sot.topology import load_topology

LEAF = "fra1-r02-leaf2"
UNKNOWN = (
    f"{LEAF}: switch platform 'eos' (the device's platform in NetBox) is not one Atlas knows (known: frr)"
)


def fra1(platform_of_leaf: str | None = "frr") -> tuple[Site, dict[str, Device]]:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    site = site.model_copy(
        update={
            "devices": tuple(
                d.model_copy(update={"platform": platform_of_leaf}) if d.name == LEAF else d
                for d in site.devices
            )
        }
    )
    return site, {d.name: d for d in topo.all_devices()} | {d.name: d for d in site.devices}


def leaf(site: Site) -> Device:
    found = site.device(LEAF)
    assert found is not None
    return found


def test_frr_is_the_platform_of_a_device_whose_netbox_platform_is_frr() -> None:
    site, _ = fra1()
    assert PLATFORMS.names == ["frr"]
    assert platform_of(leaf(site)) is FRR
    assert platform_problem(leaf(site)) is None


@pytest.mark.parametrize(("value", "shown"), [("eos", "'eos'"), (None, "none")])
def test_a_platform_atlas_does_not_know_is_refused_naming_device_and_value(
    value: str | None, shown: str
) -> None:
    site, _ = fra1(value)
    with pytest.raises(Refused) as info:
        platform_of(leaf(site))
    [problem] = info.value.problems
    assert problem.startswith(f"{LEAF}: switch platform {shown} (the device's platform in NetBox)")


def test_bringup_preflight_refuses_an_unknown_platform_before_anything_is_touched() -> None:
    site, devices = fra1("eos")
    problems = preflight(RackScope(site=site, rack="fra1-r02", devices=devices))
    assert problems.count(UNKNOWN) == 1  # once, though both the registry and the intent see it


def test_fabric_apply_refuses_it_and_names_it_once() -> None:
    site, devices = fra1("eos")
    assert config_problems(SiteView(site=site, devices=devices), [leaf(site), leaf(site)]) == [UNKNOWN]


def test_rendering_for_an_unknown_platform_says_why() -> None:
    site, devices = fra1("eos")
    with pytest.raises(RenderError, match="switch platform 'eos'"):
        render(switch_intent(site, leaf(site), devices))


def test_the_sweep_leaves_a_switch_of_an_unknown_platform_not_checked_with_the_reason() -> None:
    site, devices = fra1("eos")
    view = SiteView(site=site, devices=devices)
    found = targets([leaf(site)], lambda d: Credential(username="never-used"))
    [result] = compare_running(found, view.render, limit=1)  # refused before any SSH
    assert result.failed and result.step == Area.SWITCHES.value
    assert UNKNOWN in result.detail


# --- FRR's rules ----------------------------------------------------------------------------------
def test_frr_compares_without_its_volatile_lines_and_in_any_order() -> None:
    assert FRR.comparable("Building configuration...\nfrr version 8.4.4\n!\nhostname a\nexit\nend\n") == ""
    running = "frr version 9\n!\nip route 10.0.0.0/8 10.1.1.1\n!\ninterface lo\n ip ospf passive\nexit\nend\n"
    intended = "interface lo\n ip ospf passive\nip route 10.0.0.0/8 10.1.1.1\n"
    assert diff(running, intended, FRR).empty
    assert diff(running, intended + "ip route 10.9.0.0/16 10.1.1.1\n", FRR).summary == (
        "ip route 10.9.0.0/16 10.1.1.1",
    )


@pytest.mark.parametrize(
    ("intended", "running", "missing"),
    [
        ("router ospf\nip route 10.0.0.0/8 10.1.1.1\n", " zebra ospfd staticd\n", None),
        ("router ospf\nip route 10.0.0.0/8 10.1.1.1\n", " zebra staticd\n", "ospfd"),
        ("interface swp1\n ip ospf area 0\n", " zebra\n", "ospfd"),
        ("router bgp 65001\n", " zebra ospfd\n", "bgpd"),
        ("hostname x\n", "", "zebra"),
    ],
)
def test_frr_names_the_daemons_a_push_needs_that_are_not_running(
    intended: str, running: str, missing: str | None
) -> None:
    problem = FRR.daemons_problem(intended, running)
    if missing is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(f"FRR's {missing} not running")
        assert "nothing pushed" in problem


def test_frr_reads_ospf_in_one_vtysh_and_refuses_anything_but_plain_show_commands() -> None:
    assert FRR.supports("ospf") and FRR.supports("ebgp") and not FRR.supports("isis")
    assert FRR.routing_commands(OSPF) == ("show ip ospf neighbor json", "show ip route json")
    assert vtysh("show a", "show b") == "vtysh -c 'show a' -c 'show b'"
    for bad in ("show a'; reboot", "configure terminal"):
        with pytest.raises(ValueError, match="not a plain show command"):
            vtysh(bad)
