"""The baseline playbook's own Ansible modules (playbooks/library): what they decide to change, from
plain data; atlas_baseline also on a scratch directory, since files are what it writes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "playbooks" / "library"


def module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LIBRARY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


files = module("atlas_baseline")


def test_a_file_is_written_whole_with_its_mode_and_a_second_pass_finds_nothing(tmp_path: Path) -> None:
    want = files.wanted(
        {"path": str(tmp_path / "etc" / "atlas" / "facts.json"), "content": "{}\n", "mode": "0640"}
    )
    assert files.differences(want, files.current(want["path"])) == ["created"]
    files.write(want)
    assert (tmp_path / "etc" / "atlas" / "facts.json").read_text() == "{}\n"
    assert (tmp_path / "etc" / "atlas").stat().st_mode & 0o777 == 0o755
    assert files.differences(want, files.current(want["path"])) == []
    assert [p.name for p in (tmp_path / "etc" / "atlas").iterdir()] == ["facts.json"]  # no temporary left


def test_content_and_mode_differences_are_reported_as_ansible_diffs(tmp_path: Path) -> None:
    path = tmp_path / "hostname"
    path.write_text("old\n")
    path.chmod(0o600)
    want = files.wanted({"path": str(path), "content": "new\n", "mode": "0644"})
    have = files.current(str(path))
    assert files.differences(want, have) == ["content", "mode 0600 -> 0644"]
    text, attributes = files.diff(want, have)
    assert (text["before"], text["after"], text["after_header"]) == ("old\n", "new\n", str(path))
    assert attributes["before"] == {"path": str(path), "mode": "0600"}
    assert attributes["after"] == {"path": str(path), "mode": "0644"}


def test_a_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "atlas").touch()
    with pytest.raises(ValueError, match=r"atlas/facts.json: a parent of it is not a directory"):
        files.current(str(tmp_path / "atlas" / "facts.json"))


def test_owner_and_group_are_compared_by_name(tmp_path: Path) -> None:
    path = tmp_path / "frr.conf"
    path.write_text("x\n")
    os.chown(path, 0, 0)
    path.chmod(0o640)
    have = files.current(str(path))
    want = files.wanted(
        {"path": str(path), "content": "x\n", "mode": "0640", "owner": "nobody", "group": "root"}
    )
    assert files.differences(want, have) == ["owner root -> nobody"]


def test_owned_files_no_longer_listed_are_found_for_removal(tmp_path: Path) -> None:
    """A NIC removed from NetBox leaves its networkd file: it matches an owned pattern, unlisted."""
    network = tmp_path / "network"
    network.mkdir()
    for name in ("20-atlas-lo.network", "20-atlas-eth1.network", "20-atlas-eth3.network", "10-eth0.network"):
        (network / name).write_text("[Match]\n")
    (network / "20-atlas-dir.network").mkdir()  # never a directory
    (network / "20-atlas-link.network").symlink_to(network / "10-eth0.network")  # the link, not its target
    listed = [
        files.wanted({"path": str(network / n), "content": ""})
        for n in ("20-atlas-lo.network", "20-atlas-eth1.network")
    ]
    assert files.unlisted([str(network / "20-atlas-*.network")], listed) == [
        str(network / "20-atlas-eth3.network"),
        str(network / "20-atlas-link.network"),
    ]
    assert files.unlisted([], listed) == []


def test_a_removal_diff_shows_what_goes(tmp_path: Path) -> None:
    path = tmp_path / "20-atlas-eth3.network"
    path.write_text("[Match]\nName=eth3\n")
    diff = files.removal_diff(str(path))
    assert (diff["before"], diff["after"]) == ("[Match]\nName=eth3\n", "")
    assert diff["after_header"].endswith("(removed)")


def test_the_playbook_modules_left_are_the_baseline_module() -> None:
    """Addresses, routes, sysctls and services are files the host applies itself: no live-only module."""
    assert sorted(p.stem for p in LIBRARY.glob("*.py")) == ["atlas_baseline"]


def applied(root: Path) -> dict[str, str]:
    """The applied paths, under a scratch directory: none of a test's files is one of them."""
    return {
        role: str(root / "applied" / role)
        for role in ("hostname", "sysctl", "networkd", "networkd_conf", "service_netdev", "frr_daemons")
    }


def run_files_module(tmp_path: Path, args: dict[str, object]) -> dict[str, object]:
    """The module as Ansible runs it: its arguments in a file, its result as JSON on stdout."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"applied": applied(tmp_path), **args}}))
    done = subprocess.run(
        [sys.executable, str(LIBRARY / "atlas_baseline.py"), str(args_file)], capture_output=True, text=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_files_written_and_not_applied_are_the_next_runs_to_apply(tmp_path: Path) -> None:
    sysctl, pending = tmp_path / "90-atlas.conf", tmp_path / "run" / "baseline.pending"
    # FRR's steps follow the module in the playbook: the record stays until they are done
    args = {
        "files": [{"path": str(sysctl), "content": "a = 1\n"}],
        "pending": str(pending),
        "pending_kept": True,
    }
    first = run_files_module(tmp_path, args)
    assert first["changed"] and first["paths"] == [str(sysctl)]
    assert pending.read_text() == f"{sysctl}\n"  # recorded before the write: nothing applied it yet
    # the run failed after the module: the next run writes nothing and still has it to apply
    second = run_files_module(tmp_path, args)
    assert not second["changed"] and second["paths"] == [str(sysctl)]
    pending.unlink()  # what the playbook does once it has applied every file
    assert run_files_module(tmp_path, args)["paths"] == []


def test_the_record_is_removed_once_applied_unless_the_playbook_applies_more(tmp_path: Path) -> None:
    hostname, pending = tmp_path / "hostname", tmp_path / "run" / "baseline.pending"
    args = {"files": [{"path": str(hostname), "content": "cmp1\n"}], "pending": str(pending)}
    assert run_files_module(tmp_path, args)["paths"] == [str(hostname)]
    assert not pending.exists()  # nothing left to apply: no record
    hostname.write_text("other\n")
    kept = run_files_module(tmp_path, {**args, "pending_kept": True})
    assert kept["changed"] and pending.read_text() == f"{hostname}\n"  # FRR's steps follow in the playbook


def test_check_mode_records_nothing_pending(tmp_path: Path) -> None:
    pending = tmp_path / "baseline.pending"
    args = {
        "files": [{"path": str(tmp_path / "hostname"), "content": "cmp1\n"}],
        "pending": str(pending),
        "_ansible_check_mode": True,
    }
    assert run_files_module(tmp_path, args)["paths"] == [str(tmp_path / "hostname")]
    assert not pending.exists() and not (tmp_path / "hostname").exists()


APPLIED = {
    "hostname": "/etc/hostname",
    "sysctl": "/etc/sysctl.d/90-atlas.conf",
    "networkd": "/etc/systemd/network",
    "networkd_conf": "/etc/systemd/networkd.conf.d/90-atlas.conf",
    "service_netdev": "/etc/systemd/network/30-atlas-svc0.netdev",
    "frr_daemons": "/etc/frr/daemons",
}


def test_a_changed_network_file_reloads_networkd_and_its_own_settings_restart_it() -> None:
    nic = "/etc/systemd/network/20-atlas-eth1.network"
    assert files.steps(APPLIED, [nic], {nic}) == [("systemd-networkd reloaded", ["networkctl", "reload"])]
    restart = ("systemd-networkd restarted", ["systemctl", "restart", "systemd-networkd.service"])
    assert files.steps(APPLIED, [APPLIED["networkd_conf"], nic], {nic}) == [restart]
    # a new service interface needs a restart (a reload never makes a netdev); a removed one a reload
    netdev = APPLIED["service_netdev"]
    assert files.steps(APPLIED, [netdev], {netdev}) == [restart]
    assert files.steps(APPLIED, [netdev], set()) == [("systemd-networkd reloaded", ["networkctl", "reload"])]
    hostname = ("hostname set from its file", ["hostname", "--file", "/etc/hostname"])
    assert files.steps(APPLIED, ["/etc/hostname", "/etc/atlas/facts.json"], set()) == [hostname]
    assert files.steps(APPLIED, ["/etc/atlas/facts.json", "/etc/frr/frr.conf"], set()) == []


ADDRESSES = {"lo": ["198.19.16.11/32"], "eth1": ["198.19.128.1/31"], "eth2": ["198.19.128.3/31"]}
GATEWAYS = [{"gateway": "198.19.128.0", "ifname": "eth1"}, {"gateway": "198.19.128.2", "ifname": "eth2"}]


def live_links(**addresses: list[str]) -> list[dict[str, object]]:
    """As `ip -j -4 addr show` prints them."""
    return [
        {
            "ifname": ifname,
            "addr_info": [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1])} for a in addrs],
        }
        for ifname, addrs in addresses.items()
    ]


ECMP = [
    {
        "dst": "default",
        "nexthops": [{"gateway": "198.19.128.0", "dev": "eth1"}, {"gateway": "198.19.128.2", "dev": "eth2"}],
    }
]


def test_a_converged_host_has_no_link_off() -> None:
    live = live_links(
        lo=["127.0.0.1/8", "198.19.16.11/32"], eth1=["198.19.128.1/31"], eth2=["198.19.128.3/31"]
    )
    assert files.links_off(ADDRESSES, GATEWAYS, "lo", live, ECMP) == []


def test_a_missing_address_or_next_hop_names_its_link() -> None:
    live = live_links(lo=["127.0.0.1/8", "198.19.16.11/32"], eth1=["198.19.128.1/31"], eth2=[])
    assert files.links_off(ADDRESSES, GATEWAYS, "lo", live, ECMP) == ["eth2"]
    one_hop = [{"dst": "default", "gateway": "198.19.128.0", "dev": "eth1"}]
    live = live_links(lo=["198.19.16.11/32"], eth1=["198.19.128.1/31"], eth2=["198.19.128.3/31"])
    assert files.links_off(ADDRESSES, GATEWAYS, "lo", live, one_hop) == ["lo"]  # the route's link
    assert files.links_off(ADDRESSES, GATEWAYS, "lo", live, []) == ["lo"]
    assert files.links_off(ADDRESSES, [], "lo", live, []) == []  # no default route wanted


def test_kernel_parameters_off_are_those_whose_live_value_differs() -> None:
    live = {"net.ipv4.conf.all.rp_filter": "2", "net.ipv4.fib_multipath_hash_policy": "1"}
    wanted = {"net.ipv4.fib_multipath_hash_policy": "1", "net.ipv4.conf.all.rp_filter": "0", "net.x": "1"}
    assert files.sysctls_off(wanted, live.get) == ["net.ipv4.conf.all.rp_filter", "net.x"]
