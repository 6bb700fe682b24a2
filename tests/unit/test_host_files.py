"""The host baseline's files (atlas.hosts.files) as the inventory renders them for the default lab's
servers, on plain data: one networkd file per fabric NIC and lo, none for the management NIC, the ECMP
default route, the service interface, FRR's daemons from the routing design."""

from __future__ import annotations

from dataclasses import replace

import pytest

from atlas.core.model import Credential, Device, InterfaceKind, Site
from atlas.core.run import targets
from atlas.hosts import baseline, files
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.net.intent import SERVICE_DRAINED_DROPIN, SERVICE_NETDEV_FILE, SERVICE_NETWORK_FILE
from atlas.net.render import RenderError
from atlas.net.routing.ospf import OSPF
from atlas.sot.topology import load_topology

CRED = Credential(username="never-used")


def fra1() -> tuple[Site, dict[str, Device]]:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    return site, {d.name: d for d in topo.all_devices()}


def rendered(name: str) -> dict[str, dict[str, str]]:
    """The server's files by path, as its playbook run gets them."""
    site, devices = fra1()
    [host] = baseline.inventory(site, devices, targets([devices[name]], lambda d: CRED))
    return {f["path"]: f for f in host.variables["atlas_files"]}


CMP1 = rendered("fra1-r01-cmp1")  # routes: it announces an anycast address
STO1 = rendered("fra1-r01-sto1")  # does not route


def test_one_networkd_file_per_fabric_nic_and_lo_and_none_for_management() -> None:
    _, devices = fra1()
    nics = {i.kind: i.name for i in devices["fra1-r01-cmp1"].interfaces}
    assert nics[InterfaceKind.MGMT] == "eth0"
    network = sorted(p for p in CMP1 if p.startswith("/etc/systemd/network/20-atlas-"))
    assert network == [files.network_file(n) for n in ("eth1", "eth2", "lo")]
    assert not any("eth0" in path for path in CMP1)
    eth1 = CMP1[files.network_file("eth1")]["content"]
    assert "[Match]\nName=eth1\n" in eth1 and "\nAddress=198.18.64.9/31\n" in eth1
    assert "LinkLocalAddressing=no" in eth1 and "IPv6AcceptRA=no" in eth1


def test_lo_carries_the_loopback_and_leaves_the_kernels_own_address() -> None:
    lo = CMP1[files.network_file("lo")]["content"]
    assert "Name=lo\n" in lo and "Address=198.19.0.6/32" in lo
    assert files.KERNEL_LOOPBACK not in lo


def test_the_default_route_is_one_multipath_route_over_both_leaves_in_one_file() -> None:
    with_route = [p for p, f in CMP1.items() if "MultiPathRoute=" in f["content"]]
    assert with_route == [files.network_file(files.ROUTE_LINK)]
    lo = CMP1[with_route[0]]["content"]
    assert lo.endswith(
        "[Route]\nDestination=0.0.0.0/0\nMultiPathRoute=198.18.64.8@eth1\nMultiPathRoute=198.18.64.10@eth2\n"
    )


def test_the_routes_file_is_configurable() -> None:
    server = files.Server(
        hostname="h",
        addresses={"lo": ["198.19.0.6/32"], "eth1": ["198.18.64.9/31"], "eth2": ["198.18.64.11/31"]},
        gateways=[files.Gateway("198.18.64.8", "eth1"), files.Gateway("198.18.64.10", "eth2")],
        facts={},
    )
    by_path = {f.path: f.content for f in files.render(server, route_link="eth1")}
    assert "MultiPathRoute=198.18.64.10@eth2" in by_path[files.network_file("eth1")]
    assert "[Route]" not in by_path[files.network_file("lo")]
    with pytest.raises(RenderError, match="eth9 has no file"):
        files.render(server, route_link="eth9")


def test_the_service_interface_is_an_inert_link_whose_addresses_stay_when_it_is_down() -> None:
    assert CMP1[SERVICE_NETDEV_FILE]["content"].endswith("[NetDev]\nName=anycast0\nKind=ifb\n")
    network = CMP1[SERVICE_NETWORK_FILE]["content"]
    assert "Name=anycast0" in network and "Address=198.19.3.254/32" in network
    assert "ConfigureWithoutCarrier=yes" in network and "RequiredForOnline=no" in network
    assert "ActivationPolicy" not in network  # up or down is the drain's drop-in, never the baseline's
    assert SERVICE_DRAINED_DROPIN not in CMP1
    assert SERVICE_NETDEV_FILE not in STO1 and SERVICE_NETWORK_FILE not in STO1


def test_a_routing_host_gets_frr_files_with_the_designs_daemons() -> None:
    daemons = CMP1[files.FRR_DAEMONS]
    assert (daemons["mode"], daemons["owner"], daemons["group"]) == ("0640", "frr", "frr")
    lines = daemons["content"].splitlines()
    assert "ospfd=yes" in lines and "bgpd=no" in lines and "zebra=yes" not in lines  # zebra always runs
    assert "vtysh_enable=yes" in lines
    assert 'zebra_options="  -A 127.0.0.1 -s 90000000"' in lines and 'ospfd_options="  -A 127.0.0.1"' in lines
    config = CMP1[files.FRR_CONFIG]
    assert (config["mode"], config["owner"], config["group"]) == ("0640", "frr", "frr")
    assert "router ospf" in config["content"]
    assert files.FRR_DAEMONS not in STO1 and files.FRR_CONFIG not in STO1
    assert OSPF.daemons == ("zebra", "ospfd")


def test_the_daemons_file_follows_the_daemons_it_is_given() -> None:
    lines = files.frr_daemons_file(("zebra", "bgpd", "bfdd")).splitlines()
    assert [line for line in lines if line.endswith("=yes")] == ["bgpd=yes", "bfdd=yes", "vtysh_enable=yes"]
    with pytest.raises(RenderError, match="FRR has no daemon quaggad"):
        files.frr_daemons_file(("zebra", "quaggad"))


def test_hostname_facts_and_sysctls() -> None:
    assert CMP1[files.HOSTNAME_FILE]["content"] == "fra1-r01-cmp1\n"
    assert '"rack": "fra1-r01"' in CMP1[files.FACTS_FILE]["content"]
    sysctls = CMP1[files.SYSCTL_FILE]["content"].splitlines()
    assert sysctls[1:] == ["net.ipv4.conf.all.rp_filter = 0", "net.ipv4.fib_multipath_hash_policy = 1"]
    assert all("owner" not in f for p, f in CMP1.items() if not p.startswith("/etc/frr/"))  # root's


@pytest.mark.parametrize("name", ["eth0/1", "..", "a" * 16, "eth 1", ""])
def test_an_interface_name_cannot_leave_the_networkd_directory(name: str) -> None:
    with pytest.raises(RenderError, match="not an interface name"):
        files.network_file(name)


def test_every_file_atlas_owns_is_removed_when_unlisted_and_read_back() -> None:
    assert all(files.owned(p) for p in CMP1 if p.startswith("/etc/systemd/network/"))
    assert not files.owned(SERVICE_DRAINED_DROPIN) and not files.owned("/etc/systemd/network/10-eth0.network")
    assert not files.owned(files.FRR_CONFIG)  # FRR's package owns it on a host that does not route
    assert set(files.OWNED) <= set(files.READ)


def test_the_playbook_variables_are_the_rendered_files() -> None:
    server = files.Server(hostname="h", addresses={"lo": []}, gateways=[], facts={"name": "h"})
    variables = files.variables(server)
    assert variables["atlas_files"] == [f.as_variable() for f in files.render(server)]
    assert variables["atlas_files_owned"] == list(files.OWNED)
    assert variables["atlas_file_paths"]["networkd"] == files.NETWORKD_DIR
    assert variables["atlas_frr_config"] is None
    assert (
        files.render(replace(server, frr_config="x\n", frr_daemons=OSPF.daemons))[-1].path == files.FRR_CONFIG
    )
