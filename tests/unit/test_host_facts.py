"""Host baseline drift from one facts read: the files of the baseline's definition as a converged host
has them, and live state captured from a converged server (addresses, routes, sysctls, OSPF)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from atlas.hosts import files
from atlas.hosts.facts import baseline_drift, facts_command, parse_files, parse_sections
from atlas.net.intent import SERVICE_DRAINED_DROPIN, SERVICE_NETWORK_FILE
from atlas.net.routing.ospf import OSPF

DATA = Path(__file__).parent / "data"
CAPTURED = (DATA / "host-facts-converged.txt").read_text()


def captured(name: str) -> str:
    """A section of the captured read, as the server printed it."""
    match = re.search(rf"(?ms)^@{name}\n(.*?)(?=^@|\Z)", CAPTURED)
    assert match is not None, name
    return match[1]


def server(variables: dict[str, Any]) -> files.Server:
    return files.Server(
        hostname=variables["atlas_hostname"],
        addresses=variables["atlas_addresses"],
        gateways=[files.Gateway(**g) for g in variables["atlas_gateways"]],
        service_addresses=variables["atlas_service_addresses"],
        sysctls=variables["atlas_sysctls"],
        facts=variables["atlas_facts"],
        frr_config=variables["atlas_frr_config"],
        frr_daemons=OSPF.daemons,
    )


INTENDED = files.variables(server(json.loads((DATA / "host-baseline-vars.json").read_text())))


def file_block(path: str, content: str, mode: str = "644", owner: str = "root", group: str = "root") -> str:
    """One file as the facts command prints it."""
    return f"@file {path} {mode} {owner} {group}\n{content}\n@end-of-file\n"


def read(
    overrides: dict[str, str | None] | None = None,
    live: dict[str, str] | None = None,
    extra: str = "",
) -> str:
    """The facts command's output on the converged host: its files as the definition renders them
    (`overrides`: a path's content instead, None: absent), `extra` files, then its live state."""
    out = ""
    for spec in INTENDED["atlas_files"]:
        content = (overrides or {}).get(spec["path"], spec["content"])
        if content is not None:
            out += file_block(
                spec["path"],
                content,
                spec["mode"].lstrip("0"),
                spec.get("owner", "root"),
                spec.get("group", "root"),
            )
    out += extra
    sections = {
        "hostname": captured("hostname"),
        "sysctl": captured("sysctl"),
        "addresses": captured("addresses"),
        "default": captured("default"),
        "frr-active": "active\n",
        "frr-routing": captured("frr-routing"),
    } | (live or {})
    return out + "".join(f"@{name}\n{text}" for name, text in sections.items())


CONVERGED = read()


def changed(path: str, old: str, new: str) -> str:
    [spec] = [f for f in INTENDED["atlas_files"] if f["path"] == path]
    assert old in spec["content"]
    return read({path: spec["content"].replace(old, new)})


@pytest.fixture
def intended() -> dict[str, Any]:
    return json.loads(json.dumps(INTENDED))


def test_a_converged_host_has_no_drift(intended: dict[str, Any]) -> None:
    assert baseline_drift(intended, CONVERGED) == []


def test_the_files_read_back_are_the_files_written() -> None:
    found = parse_files(CONVERGED)
    assert [f["path"] for f in INTENDED["atlas_files"]] == list(found)
    assert all(found[f["path"]].content == f["content"] for f in INTENDED["atlas_files"])
    assert found[files.FRR_CONFIG].mode == 0o640 and found[files.FRR_CONFIG].owner == "frr"
    assert parse_sections(CONVERGED)["frr-active"] == "active"


NIC_FILE = "/etc/systemd/network/20-atlas-eth1.network"
LO_FILE = "/etc/systemd/network/20-atlas-lo.network"
DRIFTS = {
    "hostname": (lambda: read(live={"hostname": "localhost\n"}), "hostname 'localhost'"),
    "hostname file": (lambda: read({files.HOSTNAME_FILE: "localhost\n"}), "/etc/hostname differs"),
    "live sysctl": (
        lambda: read(live={"sysctl": captured("sysctl").replace("rp_filter = 0", "rp_filter = 2")}),
        "sysctl net.ipv4.conf.all.rp_filter: 2, intended 0",
    ),
    "sysctl file": (lambda: read({files.SYSCTL_FILE: None}), "/etc/sysctl.d/90-atlas.conf is missing"),
    "NIC file": (lambda: changed(NIC_FILE, "198.18.64.9/31", "198.18.64.99/31"), f"{NIC_FILE} differs"),
    "route file": (lambda: changed(LO_FILE, "MultiPathRoute=198.18.64.10@eth2\n", ""), f"{LO_FILE} differs"),
    "left-over NIC file": (
        lambda: read(extra=file_block("/etc/systemd/network/20-atlas-eth3.network", "[Match]\nName=eth3\n")),
        "/etc/systemd/network/20-atlas-eth3.network is not in the baseline",
    ),
    "mode": (
        lambda: CONVERGED.replace(f"@file {files.FRR_CONFIG} 640", f"@file {files.FRR_CONFIG} 644"),
        "/etc/frr/frr.conf mode 0644, intended 0640",
    ),
    "owner": (
        lambda: CONVERGED.replace(
            f"@file {files.FRR_DAEMONS} 640 frr frr", f"@file {files.FRR_DAEMONS} 640 root root"
        ),
        "/etc/frr/daemons owner root:root, intended frr:frr",
    ),
    "missing address": (
        lambda: read(
            live={"addresses": captured("addresses").replace('"local":"198.19.0.6"', '"local":"198.19.0.99"')}
        ),
        "lo addresses",
    ),
    "interface down": (
        lambda: read(
            live={
                "addresses": captured("addresses").replace(
                    '"ifname":"eth1","flags":["BROADCAST","MULTICAST","UP",',
                    '"ifname":"eth1","flags":["BROADCAST","MULTICAST",',
                )
            }
        ),
        "eth1 is down",
    ),
    "one leaf only": (
        lambda: read(
            live={"default": '[{"dst":"default","gateway":"198.18.64.8","dev":"eth1","flags":[]}]\n'}
        ),
        "default route",
    ),
    "facts file": (
        lambda: changed(files.FACTS_FILE, '"rack": "fra1-r01"', '"rack": "fra1-r09"'),
        "/etc/atlas/facts.json differs",
    ),
    "service address": (
        lambda: read(
            live={
                "addresses": captured("addresses").replace('"local":"198.19.3.254"', '"local":"198.19.3.253"')
            }
        ),
        "anycast0 addresses ['198.19.3.253/32'], intended ['198.19.3.254/32']",
    ),
    "files not applied": (
        lambda: read(live={"pending": f"{files.SYSCTL_FILE}\n{NIC_FILE}\n"}),
        f"written by an earlier run and not yet applied: {files.SYSCTL_FILE}, {NIC_FILE}",
    ),
    "frr.service stopped": (lambda: read(live={"frr-active": "inactive\n"}), "frr.service is inactive"),
    "FRR stopped": (lambda: read(live={"frr-routing": ""}), "FRR is not running"),
    "FRR changed by hand": (
        lambda: read(
            live={
                "frr-routing": captured("frr-routing").replace(
                    " timers lsa min-arrival 0\n max-metric router-lsa administrative\n",
                    " timers lsa min-arrival 0\n",
                )
            }
        ),
        "FRR running: router ospf: max-metric router-lsa administrative",
    ),
    "OSPF down": (
        lambda: read(live={"frr-routing": "{}\n" + CAPTURED[CAPTURED.index("Building configuration") :]}),
        "OSPF adjacency on eth1 is not Full",
    ),
    "FRR file": (lambda: read({files.FRR_CONFIG: "frr defaults traditional\n"}), "/etc/frr/frr.conf differs"),
    "FRR daemons": (
        lambda: changed(files.FRR_DAEMONS, "ospfd=yes", "ospfd=no"),
        "/etc/frr/daemons differs",
    ),
}


@pytest.mark.parametrize("kind", DRIFTS)
def test_each_kind_of_drift_is_named(intended: dict[str, Any], kind: str) -> None:
    output, named = DRIFTS[kind]
    drift = baseline_drift(intended, output())
    assert any(named in d for d in drift), drift


def test_a_drained_host_does_not_differ(intended: dict[str, Any]) -> None:
    """Drained: the service interface down (its drop-in says so), its addresses kept."""
    addresses = captured("addresses").replace(
        '"ifname":"anycast0","flags":["BROADCAST","NOARP","UP","LOWER_UP"]',
        '"ifname":"anycast0","flags":["BROADCAST","NOARP"]',
    )
    dropin = file_block(SERVICE_DRAINED_DROPIN, "[Link]\nActivationPolicy=down\n")
    drained = read(live={"addresses": addresses}, extra=dropin)
    assert drained != CONVERGED and baseline_drift(intended, drained) == []
    assert SERVICE_DRAINED_DROPIN.startswith(SERVICE_NETWORK_FILE)


def test_a_host_that_stopped_announcing_has_its_service_files_left_over(intended: dict[str, Any]) -> None:
    plain = files.variables(replace(server(intended), service_addresses=()))
    drift = baseline_drift(plain, CONVERGED)
    assert f"{SERVICE_NETWORK_FILE} is not in the baseline" in drift
    assert any(d.startswith("anycast0 addresses") for d in drift)


def test_the_command_is_a_constant_that_reads_every_file_of_the_definition(intended: dict[str, Any]) -> None:
    command = facts_command()
    assert intended["atlas_hostname"] not in command and "198.18." not in command  # nothing from NetBox
    for spec in intended["atlas_files"]:
        assert any(re.fullmatch(re.escape(p).replace(r"\*", "[^/]*"), spec["path"]) for p in files.READ)
    assert all(p in command for p in files.READ)
    assert SERVICE_DRAINED_DROPIN not in command  # the drain state is not the baseline's


def test_the_routing_part_of_the_facts_is_the_sites_design(intended: dict[str, Any]) -> None:
    """The converged output was read with the default design's command; OSPF's drift lines name it."""
    assert facts_command(OSPF) == facts_command()
    assert f"echo @frr-routing; {OSPF.host_facts_command};" in facts_command()
    assert parse_sections(CONVERGED)["frr-routing"].lstrip().startswith("{")  # OSPF's neighbours, as JSON
    assert baseline_drift(intended, CONVERGED, OSPF) == []


def test_an_unreadable_host_differs_in_every_part(intended: dict[str, Any]) -> None:
    drift = baseline_drift(intended, "")
    assert [d for d in drift if d.endswith(" is missing")] == [
        f"{f['path']} is missing" for f in intended["atlas_files"]
    ]
    assert len(drift) >= len(intended["atlas_files"]) + 1 + 2 + 2 * len(intended["atlas_addresses"]) + 1 + 1
