"""The systemd units Atlas writes, read as plain files: the image's units and target in
playbooks/services/systemd/ (the names the workload adapter drives, and the target never enabled by
the playbook), and the OSD activation units that the ceph_osd role's osd-volume.py installs, with its
systemctl calls against a fake `run`. No systemd runs here."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from atlas.hosts.runner import PLAYBOOKS
from atlas.workloads.systemd_services import IMAGE_TARGET, IMAGE_TARGET_FILE, IMAGE_UNIT_PREFIX

SYSTEMD = PLAYBOOKS / "services" / "systemd"
OSD_VOLUME = PLAYBOOKS / "roles" / "ceph_osd" / "files" / "osd-volume.py"


def tasks(name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = yaml.safe_load((SYSTEMD / name).read_text())
    return found


def copied(name: str) -> dict[str, str]:
    """dest -> content of the file tasks' copies."""
    return {
        t["ansible.builtin.copy"]["dest"]: t["ansible.builtin.copy"]["content"]
        for t in tasks(name)
        if "ansible.builtin.copy" in t
    }


def test_each_image_service_is_a_unit_of_the_target_the_adapter_drives() -> None:
    files = copied("image-services.yml")
    unit = files[f"/etc/systemd/system/{IMAGE_UNIT_PREFIX}{{{{ item.name }}}}.service"]
    assert f"PartOf={IMAGE_TARGET}\n" in unit and f"WantedBy={IMAGE_TARGET}\n" in unit
    assert "ExecStart={{ root }}/current/" in unit and "WorkingDirectory={{ root }}/current\n" in unit
    assert "Restart=on-failure\n" in unit
    assert "WantedBy=multi-user.target\n" in files[IMAGE_TARGET_FILE]


def test_the_playbook_never_enables_or_starts_the_target() -> None:
    for name in ("image-services.yml", "image-services-removed.yml"):
        for task in tasks(name):
            systemd = task.get("ansible.builtin.systemd_service", {})
            assert "target" not in str(systemd.get("name", "")), task["name"]
    assert IMAGE_TARGET not in (PLAYBOOKS / "image-apply.yml").read_text().split("tasks:")[1]


def test_a_unit_that_does_not_run_fails_its_host_with_its_journal() -> None:
    [journal] = [t for t in tasks("image-services.yml") if "ansible.builtin.command" in t]
    argv = journal["ansible.builtin.command"]["argv"]
    assert argv == [
        "journalctl",
        "-u",
        "atlas-image-{{ item.item.name }}.service",
        "-n",
        "20",
        "--no-pager",
        "-o",
        "cat",
    ]
    [fail] = [t for t in tasks("image-services.yml") if "ansible.builtin.fail" in t]
    assert "r.stdout_lines" in fail["ansible.builtin.fail"]["msg"]  # one task: its msg is the host's failure


# --- osd-volume.py's units --------------------------------------------------------------------------
@pytest.fixture
def osd_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[tuple[str, ...]]]:
    """The script as a module, its files under tmp_path, its commands recorded: `systemctl show`
    answers active, `is-enabled` says what `enabled` holds."""
    spec = importlib.util.spec_from_file_location("osd_volume", OSD_VOLUME)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("ACTIVATE_UNIT", "ENV_FILE", "DROPIN"):
        monkeypatch.setattr(module, name, str(tmp_path) + getattr(module, name))
    calls: list[tuple[str, ...]] = []
    active: set[str] = set()

    def run(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        out = ""
        if argv[:2] == ("systemctl", "show"):
            state = "active" if argv[-1] in active else "inactive"
            out = f"ActiveState={state}\nSubState=running\nNRestarts=0\nActiveEnterTimestampMonotonic=1\n"
        if argv[:3] == ("systemctl", "enable", "--now"):
            active.update(argv[3:])
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(module, "run", run)
    monkeypatch.setattr(module, "enabled", lambda unit: unit in active)
    monkeypatch.setattr(module, "outside_systemd", lambda osd_id: None)
    return module, calls


def test_the_units_are_written_once_and_systemd_reloaded_only_then(
    osd_volume: tuple[ModuleType, list[tuple[str, ...]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, calls = osd_volume
    monkeypatch.setenv("CEPH_VOLUME_ALLOW_LOOP_DEVICES", "1")
    assert module.install_units({"/dev/loop3": (7, "0f3c-uuid")})
    assert calls == [("systemctl", "daemon-reload")]
    assert not module.install_units({"/dev/loop3": (7, "0f3c-uuid")}) and len(calls) == 1
    env = Path(str(tmp_path) + "/etc/atlas/osd/7.env").read_text()
    assert env == "OSD_DEVICE=/dev/loop3\nOSD_UUID=0f3c-uuid\nCEPH_VOLUME_ALLOW_LOOP_DEVICES=1\n"
    dropin = Path(
        str(tmp_path) + "/etc/systemd/system/ceph-osd@7.service.d/50-atlas-activate.conf"
    ).read_text()
    assert (
        "Requires=atlas-osd-activate@7.service\n" in dropin
        and "After=atlas-osd-activate@7.service\n" in dropin
    )
    unit = Path(str(tmp_path) + "/etc/systemd/system/atlas-osd-activate@.service").read_text()
    assert (
        "Type=oneshot\n" in unit
        and "RemainAfterExit=yes\n" in unit
        and "Before=ceph-osd@%i.service\n" in unit
    )
    assert (
        "ceph-volume raw activate --device ${OSD_DEVICE} --osd-id %i --osd-uuid ${OSD_UUID} --no-systemd"
        in unit
    )


def test_a_stopped_osd_is_enabled_and_started_by_its_units_and_a_running_one_left(
    osd_volume: tuple[ModuleType, list[tuple[str, ...]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, calls = osd_volume
    monkeypatch.setattr(module, "STABLE_S", 0)
    monkeypatch.setattr(module.time, "monotonic", lambda: 10.0)
    assert module.start("/dev/loop3", 7)
    assert ("systemctl", "enable", "--now", "atlas-osd-activate@7.service", "ceph-osd@7.service") in calls
    calls.clear()
    assert not module.start("/dev/loop3", 7)
    assert not any(c[:2] == ("systemctl", "enable") for c in calls)
