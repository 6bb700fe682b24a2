from pathlib import Path

import pytest
import yaml

from atlas.core.model import InterfaceKind, Role
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.sot.topology import TopologyError, load_topology


def write(tmp_path: Path, files: dict[str, object]) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    return tmp_path


def base() -> dict[str, dict[str, object]]:
    return {
        "catalog.yaml": {
            "device_types": [
                {"name": "sw", "ports": [{"prefix": "swp", "count": 4}]},
                {"name": "srv", "ports": [{"prefix": "eth", "first": 1, "count": 2}]},
            ],
            "prefixes": [{"prefix": "198.18.0.0/24", "role": "management"}],
        },
        "site.yaml": {
            "sites": [{"name": "s1", "racks": [{"name": "r1", "status": "planned"}]}],
            "devices": [
                {
                    "name": "leaf1",
                    "site": "s1",
                    "rack": "r1",
                    "role": "leaf",
                    "type": "sw",
                    "mgmt": "198.18.0.10/24",
                    "loopback": "198.19.0.1/32",
                },
                {
                    "name": "srv1",
                    "site": "s1",
                    "rack": "r1",
                    "role": "compute",
                    "type": "srv",
                    "mgmt": "198.18.0.11/24",
                },
            ],
            "cables": [
                {
                    "a": "leaf1:swp1",
                    "b": "srv1:eth1",
                    "a_address": "198.18.64.0/31",
                    "b_address": "198.18.64.1/31",
                },
            ],
        },
    }


def problems_of(tmp_path: Path, files: dict[str, object]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        load_topology(write(tmp_path, files))
    return info.value.problems


def test_default_lab_topology_is_valid_and_has_the_documented_shape() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert sorted(s.name for s in topo.sites) == ["ams1", "core", "fra1"]
    for name in ("fra1", "ams1"):
        site = next(s for s in topo.sites if s.name == name)
        assert sorted(r.status.value for r in site.racks) == ["active", "planned"]
        roles = [d.role for d in site.devices]
        assert roles.count(Role.SPINE) == 2
        assert roles.count(Role.LEAF) == 4
        assert Role.COMPUTE in roles and Role.STORAGE in roles
    assert [d.name for d in topo.all_devices() if d.role == Role.CORE] == ["core1"]


def test_a_valid_file_becomes_models_with_addresses_on_their_interfaces(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, base()))
    leaf = topo.device("leaf1")
    assert leaf is not None
    assert str(leaf.mgmt_address) == "198.18.0.10/24"
    swp1 = leaf.interface("swp1")
    assert swp1 is not None and [str(a) for a in swp1.addresses] == ["198.18.64.0/31"]
    assert leaf.interface("eth0").kind == InterfaceKind.MGMT  # type: ignore[union-attr]
    assert leaf.interface("lo").kind == InterfaceKind.LOOPBACK  # type: ignore[union-attr]
    assert len(topo.all_cables()) == 1


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    files = base()
    site = files["site.yaml"]
    devices = site["devices"]
    cables = site["cables"]
    assert isinstance(devices, list) and isinstance(cables, list)
    devices += [
        {
            "name": "leaf2",
            "site": "s1",
            "rack": "r9",
            "role": "leaf",
            "type": "sw",
            "mgmt": "198.18.0.10/24",
            "loopback": "198.19.0.2/32",
        },  # unknown rack, duplicate address
        {"name": "srv1", "site": "s1", "role": "compute", "type": "srv", "mgmt": "198.18.0.12/24"},
        {"name": "bad name;reload", "site": "s2", "role": "router", "type": "nope"},
    ]
    cables += [
        {"a": "leaf1:swp9", "b": "srv1:eth2"},  # leaf1 has no swp9
        {"a": "leaf1:swp1", "b": "ghost:eth1"},  # swp1 already cabled, ghost unknown
        {"a": "leaf1:swp3", "b": "srv1:eth2", "description": "uplink\nreload"},
        {"a": "leaf1", "b": "srv1:eth0"},
    ]
    problems = problems_of(tmp_path, files)
    text = "\n".join(problems)
    for expected in (
        "device leaf2: unknown rack 'r9'",
        "address 198.18.0.10 is used more than once",
        "device 'srv1' is defined more than once",
        "'bad name;reload' is not a safe name",
        "unknown site 's2'",
        "unknown role 'router'",
        "unknown device type 'nope'",
        "no management address",
        "has no interface 'swp9'",
        "leaf1:swp1 is already cabled",
        "unknown device 'ghost'",
        "contains control characters",
        "end 'leaf1' is not 'device:interface'",
        "srv1:eth0 is a management, loopback or BMC interface",
    ):
        assert expected in text, f"missing problem {expected!r} in:\n{text}"


def test_addresses_and_prefixes_are_checked(tmp_path: Path) -> None:
    files = base()
    devices = files["site.yaml"]["devices"]
    cables = files["site.yaml"]["cables"]
    assert isinstance(devices, list) and isinstance(cables, list)
    devices[0]["loopback"] = "198.19.0.0/24"
    devices[1]["mgmt"] = "10.0.0.5/24"
    cables[0]["b_address"] = "198.18.64.9/31"
    cables.append({"a": "leaf1:swp2", "b": "srv1:eth2", "a_address": "198.18.64.2/31"})
    text = "\n".join(problems_of(tmp_path, files))
    assert "loopback 198.19.0.0/24 is not a /32" in text
    assert "management address 10.0.0.5/24 is outside every management prefix" in text
    assert "are not in one subnet" in text
    assert "only one end has an address" in text


def test_schema_errors_name_file_and_field(tmp_path: Path) -> None:
    files = base()
    files["site.yaml"]["devices"][0]["mgmt"] = "not-an-address"  # type: ignore[index]
    files["site.yaml"]["devices"][1]["colour"] = "blue"  # type: ignore[index]
    text = "\n".join(problems_of(tmp_path, files))
    assert "site.yaml: devices.0.mgmt" in text
    assert "site.yaml: devices.1.colour" in text


def test_no_files_is_an_error(tmp_path: Path) -> None:
    assert problems_of(tmp_path, {}) == [f"no topology files found in {tmp_path}"]


def test_anycast_addresses_are_servers_own_host_routes(tmp_path: Path) -> None:
    files = base()
    devices = files["site.yaml"]["devices"]
    assert isinstance(devices, list)
    devices[0]["anycast"] = ["198.19.0.250/32"]  # a leaf
    devices[1]["anycast"] = ["198.19.0.250/24", "198.18.0.10/32", "198.18.0.10/32"]  # and no loopback
    text = "\n".join(problems_of(tmp_path, files))
    assert "device leaf1: only servers announce anycast addresses, not a leaf" in text
    assert "device srv1: announcing anycast addresses needs a loopback" in text
    assert "device srv1: anycast address 198.19.0.250/24 is not a /32" in text
    assert "device srv1: anycast address 198.18.0.10/32 listed more than once" in text
    assert "device srv1: anycast address 198.18.0.10 is also leaf1:eth0" in text


def test_several_servers_share_an_anycast_address(tmp_path: Path) -> None:
    files = base()
    devices = files["site.yaml"]["devices"]
    assert isinstance(devices, list)
    devices[1] |= {"anycast": ["198.19.0.250/32"], "loopback": "198.19.0.2/32"}
    devices.append(devices[1] | {"name": "srv2", "mgmt": "198.18.0.12/24", "loopback": "198.19.0.3/32"})
    topo = load_topology(write(tmp_path, files))
    assert [str(d.anycast[0]) for d in topo.all_devices() if d.anycast] == ["198.19.0.250/32"] * 2


def test_a_servers_bmc_address_and_serial_are_read_and_checked(tmp_path: Path) -> None:
    files = base()
    catalog, site = files["catalog.yaml"], files["site.yaml"]
    catalog["device_types"][1]["bmc"] = True  # type: ignore[index]
    catalog["prefixes"].append({"prefix": "198.18.32.0/24", "role": "oob"})  # type: ignore[attr-defined]
    devices = site["devices"]
    devices[1] |= {"oob": "198.18.32.11/24", "serial": "SN1"}  # type: ignore[index]
    good = load_topology(write(tmp_path / "good", files) if (tmp_path / "good").mkdir() is None else tmp_path)
    srv = good.device("srv1")
    assert srv is not None and srv.serial == "SN1" and str(srv.oob_address) == "198.18.32.11/24"
    assert [i.name for i in srv.nics] == ["eth0", "eth1", "eth2"]  # the BMC port is not a NIC of the host
    devices[0] |= {"oob": "198.18.33.1/24", "serial": "SN1"}  # type: ignore[index]
    (tmp_path / "bad").mkdir()
    problems = "\n".join(problems_of(tmp_path / "bad", files))
    assert "device leaf1: an OOB address 198.18.33.1/24, but its type sw has no BMC" in problems
    assert "device leaf1: OOB address 198.18.33.1/24 is outside every prefix of role 'oob'" in problems
    assert "serial 'SN1' is recorded for more than one device" in problems
