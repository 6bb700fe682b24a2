"""Host baseline drift from one facts read, against output captured from a converged lab server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from atlas.hosts.facts import baseline_drift, facts_command, parse_sections
from atlas.net.routing.ospf import OSPF

DATA = Path(__file__).parent / "data"
CONVERGED = (DATA / "host-facts-converged.txt").read_text()


@pytest.fixture
def intended() -> dict[str, Any]:
    variables: dict[str, Any] = json.loads((DATA / "host-baseline-vars.json").read_text())
    return variables


def section(output: str, name: str, replacement: str) -> str:
    return re.sub(rf"(?ms)^@{name}\n.*?(?=^@|\Z)", f"@{name}\n{replacement}", output)


def running_config(output: str) -> str:
    return output[output.index("Building configuration") :]


def test_a_converged_host_has_no_drift(intended: dict[str, Any]) -> None:
    assert baseline_drift(intended, CONVERGED) == []


DRIFTS = {
    "hostname": (lambda o: o.replace("@hostname\nfra1-r01-cmp1", "@hostname\nlocalhost"), "hostname"),
    "live sysctl": (
        lambda o: o.replace("net.ipv4.conf.all.rp_filter = 0", "net.ipv4.conf.all.rp_filter = 2"),
        "sysctl net.ipv4.conf.all.rp_filter: 2",
    ),
    "sysctl file": (lambda o: section(o, "sysctl-file", ""), "(saved None)"),
    "missing address": (lambda o: o.replace('"local":"198.19.0.6"', '"local":"198.19.0.99"'), "lo addresses"),
    "interface down": (
        lambda o: o.replace(
            '"ifname":"eth1","flags":["BROADCAST","MULTICAST","UP",',
            '"ifname":"eth1","flags":["BROADCAST","MULTICAST",',
        ),
        "eth1 is down",
    ),
    "one leaf only": (
        lambda o: section(
            o, "default", '[{"dst":"default","gateway":"198.18.64.8","dev":"eth1","flags":[]}]\n'
        ),
        "default route",
    ),
    "facts file": (lambda o: o.replace('"rack": "fra1-r01"', '"rack": "fra1-r09"'), "facts.json differs"),
    "service address": (
        lambda o: o.replace('"local":"198.19.3.254"', '"local":"198.19.3.253"'),
        "anycast0 addresses ['198.19.3.253/32'], intended ['198.19.3.254/32']",
    ),
    "FRR stopped": (lambda o: section(o, "frr-routing", ""), "FRR is not running"),
    "FRR changed by hand": (
        lambda o: o.replace(
            " timers lsa min-arrival 0\n max-metric router-lsa administrative\n",
            " timers lsa min-arrival 0\n",
        ),
        "FRR running: router ospf: max-metric router-lsa administrative",
    ),
    "OSPF down": (
        lambda o: section(o, "frr-routing", "{}\n" + running_config(o)),
        "OSPF adjacency on eth1 is not Full",
    ),
    "ospfd not answering": (
        lambda o: section(o, "frr-routing", "ospfd is not running\n" + running_config(o)),
        "OSPF adjacency on eth1 is not Full",
    ),
    "FRR file": (lambda o: section(o, "frr", "frr defaults traditional\n"), "/etc/frr/frr.conf differs"),
}


def test_a_drained_host_whose_service_interface_is_down_does_not_differ(intended: dict[str, Any]) -> None:
    drained = CONVERGED.replace(
        '"ifname":"anycast0","flags":["BROADCAST","NOARP","UP","LOWER_UP"]',
        '"ifname":"anycast0","flags":["BROADCAST","NOARP"]',
    )
    assert drained != CONVERGED and baseline_drift(intended, drained) == []


@pytest.mark.parametrize("kind", DRIFTS)
def test_each_kind_of_drift_is_named(intended: dict[str, Any], kind: str) -> None:
    change, named = DRIFTS[kind]
    drift = baseline_drift(intended, change(CONVERGED))
    assert any(named in d for d in drift), drift


def test_the_routing_part_of_the_facts_is_the_sites_design(intended: dict[str, Any]) -> None:
    """The converged output was read with the default design's command; OSPF's drift lines name it."""
    assert facts_command(OSPF) == facts_command()
    assert f"echo @frr-routing; {OSPF.host_facts_command};" in facts_command()
    assert parse_sections(CONVERGED)["frr-routing"].lstrip().startswith("{")  # OSPF's neighbours, as JSON
    assert baseline_drift(intended, CONVERGED, OSPF) == []


def test_an_unreadable_host_differs_in_every_part(intended: dict[str, Any]) -> None:
    assert len(baseline_drift(intended, "")) >= 1 + 2 + 2 * len(intended["atlas_addresses"]) + 1 + 1
