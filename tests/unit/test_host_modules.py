"""The baseline playbook's own Ansible modules (playbooks/library): what they decide to change, from
plain data; atlas_files also on a scratch directory, since files are what it writes."""

from __future__ import annotations

import importlib.util
import os
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


files = module("atlas_files")
sysctl = module("atlas_sysctl")
supervised = module("atlas_supervised")


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


def test_the_sysctl_file_holds_exactly_the_parameters_sorted() -> None:
    content = sysctl.file_content(
        {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.fib_multipath_hash_policy": "1"}
    )
    assert content.splitlines()[1:] == [
        "net.ipv4.conf.all.rp_filter = 0",
        "net.ipv4.fib_multipath_hash_policy = 1",
    ]
    assert content.startswith("# Written by Atlas")


@pytest.mark.parametrize("name", ["", "net..ipv4", "net.ipv4/../../etc", "..", "net.ipv4."])
def test_a_sysctl_name_cannot_leave_proc_sys(name: str) -> None:
    with pytest.raises(ValueError, match="not a kernel parameter name"):
        sysctl.proc_path(name)


def test_a_multi_value_sysctl_reads_as_sysctl_prints_it(tmp_path: Path) -> None:
    (tmp_path / "tcp_rmem").write_text("4096\t131072\t6291456\n")
    assert sysctl.live_value(tmp_path / "tcp_rmem") == "4096 131072 6291456"


def test_a_sysctl_name_maps_to_its_proc_file() -> None:
    assert sysctl.proc_path("net.ipv4.conf.all.rp_filter") == Path("/proc/sys/net/ipv4/conf/all/rp_filter")


PROCESS_INFO = [
    {"name": "frr-zebra", "statename": "RUNNING"},
    {"name": "frr-ospfd", "statename": "FATAL"},
    {"name": "lldpd", "statename": "RUNNING"},
]


def test_supervised_programs_are_added_when_unknown_and_started_when_not_running() -> None:
    status = supervised.statuses(PROCESS_INFO)
    assert status == {"frr-zebra": "RUNNING", "frr-ospfd": "FATAL", "lldpd": "RUNNING"}
    assert supervised.plan(["frr-zebra", "frr-ospfd"], status) == ([], ["frr-ospfd"])
    assert supervised.plan(["frr-zebra", "frr-bgpd"], status) == (["frr-bgpd"], ["frr-bgpd"])
    assert supervised.plan(["frr-zebra", "lldpd"], status) == ([], [])
