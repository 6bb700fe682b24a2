"""The baseline playbook's own Ansible modules (playbooks/library): what they decide to change, from
plain data; atlas_files also on a scratch directory, since files are what it writes."""

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


files = module("atlas_files")


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


def test_the_playbook_modules_left_are_the_files_module() -> None:
    """Addresses, routes, sysctls and services are files the host applies itself: no live-only module."""
    assert sorted(p.stem for p in LIBRARY.glob("*.py")) == ["atlas_files"]


def run_files_module(tmp_path: Path, args: dict[str, object]) -> dict[str, object]:
    """The module as Ansible runs it: its arguments in a file, its result as JSON on stdout."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run(
        [sys.executable, str(LIBRARY / "atlas_files.py"), str(args_file)], capture_output=True, text=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_files_written_and_not_applied_are_the_next_runs_to_apply(tmp_path: Path) -> None:
    sysctl, pending = tmp_path / "90-atlas.conf", tmp_path / "run" / "baseline.pending"
    args = {"files": [{"path": str(sysctl), "content": "a = 1\n"}], "pending": str(pending)}
    first = run_files_module(tmp_path, args)
    assert first["changed"] and first["paths"] == [str(sysctl)]
    assert pending.read_text() == f"{sysctl}\n"  # recorded before the write: nothing applied it yet
    # the run failed before applying it: the next run writes nothing and still has it to apply
    second = run_files_module(tmp_path, args)
    assert not second["changed"] and second["paths"] == [str(sysctl)]
    pending.unlink()  # what the playbook does once it has applied every file
    assert run_files_module(tmp_path, args)["paths"] == []


def test_check_mode_records_nothing_pending(tmp_path: Path) -> None:
    pending = tmp_path / "baseline.pending"
    args = {
        "files": [{"path": str(tmp_path / "hostname"), "content": "cmp1\n"}],
        "pending": str(pending),
        "_ansible_check_mode": True,
    }
    assert run_files_module(tmp_path, args)["paths"] == [str(tmp_path / "hostname")]
    assert not pending.exists() and not (tmp_path / "hostname").exists()
