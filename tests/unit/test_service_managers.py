"""The service manager seam on plain data: which manager a server has, preflight refusing one Atlas
does not know (device and value named, before anything is touched), systemd's read parser, and
the playbooks' side of every registered manager."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.core.errors import Refused
from atlas.core.model import Credential, Device, Site
from atlas.core.run import targets
from atlas.hosts import baseline
from atlas.hosts.runner import PLAYBOOKS
from atlas.hosts.services import (
    SERVICE_MANAGERS,
    manager_of,
    playbook_variables,
    service_problems,
)
from atlas.hosts.services.systemd import Systemd
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.bringup import RackScope, preflight
from atlas.runbooks.ceph_enroll import host_problems
from atlas.runbooks.rollout import scope_problems
from atlas.runbooks.site import SiteView
from atlas.runbooks.sweep import check_hosts
from atlas.sot.schema import SERVICE_MANAGER_FIELD
from atlas.sot.topology import load_topology

RACK = "fra1-r02"
CRED = Credential(username="never-used")
RUNIT = "fra1-r02-cmp1: service manager 'runit' (the server's custom field service_manager in NetBox)"


def site(managers: dict[str, object] | None = None) -> tuple[Site, dict[str, Device]]:
    """The default lab's fra1, its servers' custom field service_manager set as `managers` says."""
    topo = load_topology(DEFAULT_TOPOLOGY)
    fra1 = topo.site_as_read("fra1")
    fra1 = fra1.model_copy(
        update={
            "devices": tuple(
                d.model_copy(update={"custom_fields": {SERVICE_MANAGER_FIELD: managers[d.name]}})
                if managers and d.name in managers
                else d
                for d in fra1.devices
            )
        }
    )
    return fra1, {d.name: d for d in topo.all_devices()} | {d.name: d for d in fra1.devices}


def test_an_empty_field_means_systemd() -> None:
    fra1, devices = site({"fra1-r02-cmp1": None, "fra1-r02-cmp2": ""})
    for name in ("fra1-r02-cmp1", "fra1-r02-cmp2", "fra1-r02-sto1"):
        assert isinstance(manager_of(devices[name]), Systemd)
        assert playbook_variables(devices[name]) == {"atlas_service_manager": "systemd"}
    assert service_problems(fra1.devices) == []
    assert preflight(RackScope(site=fra1, rack=RACK, devices=devices)) == []


def test_an_unknown_manager_is_refused_in_bringup_preflight_naming_device_and_value() -> None:
    fra1, devices = site({"fra1-r02-cmp1": "runit"})
    problems = preflight(RackScope(site=fra1, rack=RACK, devices=devices))
    assert problems == [f"{RUNIT} is not one Atlas knows (known: systemd)"]


def test_a_switch_carries_no_service_manager() -> None:
    fra1, _ = site({"fra1-r02-leaf1": "runit"})
    assert service_problems(fra1.devices) == []


def test_image_rollout_and_ceph_enrollment_refuse_it_too() -> None:
    fra1, devices = site({"fra1-r01-cmp1": "runit", "fra1-r01-sto1": "s6"})
    assert scope_problems(fra1, "fra1-r01", None) == [
        "fra1-r01-cmp1: service manager 'runit' (the server's custom field service_manager in NetBox) "
        "is not one Atlas knows (known: systemd)",
        "fra1-r01-sto1: service manager 's6' (the server's custom field service_manager in NetBox) "
        "is not one Atlas knows (known: systemd)",
    ]
    assert scope_problems(fra1, "fra1-r02", None) == []  # another rack's servers are not in scope
    sto1 = devices["fra1-r01-sto1"].model_copy(
        update={"disk_paths": {d: f"/dev/loop{i}" for i, d in enumerate(devices["fra1-r01-sto1"].disks)}}
    )
    assert host_problems(["fra1-r01-sto1"], {"fra1-r01-sto1": sto1}) == [
        "fra1-r01-sto1: service manager 's6' (the server's custom field service_manager in NetBox) "
        "is not one Atlas knows (known: systemd)"
    ]


def test_the_baseline_inventory_refuses_an_unknown_manager_too() -> None:
    fra1, devices = site({"fra1-r02-cmp1": "runit"})
    with pytest.raises(Refused, match="fra1-r02-cmp1: service manager 'runit'"):
        baseline.inventory(fra1, devices, targets([devices["fra1-r02-cmp1"]], lambda d: CRED))
    [host] = baseline.inventory(fra1, devices, targets([devices["fra1-r02-cmp2"]], lambda d: CRED))
    assert host.variables["atlas_service_manager"] == "systemd"


# systemctl list-units --all --type=service --no-legend --plain --full on a Debian 12 server
SYSTEMCTL_LIST_UNITS = """\
atlas-app.service                      loaded    active   running atlas-app (image 1.4.2)
ceph-osd@3.service                     loaded    active   running Ceph object storage daemon osd.3
frr.service                            loaded    failed   failed  FRRouting
getty@tty1.service                     loaded    inactive dead    Getty on tty1
ntp.service                            not-found inactive dead    ntp.service
systemd-networkd.service               loaded    active   running Network Configuration
systemd-sysctl.service                 loaded    active   exited  Apply Kernel Variables
web.service                            loaded    activating auto-restart Web
"""


def test_systemd_status_is_parsed_unit_by_unit() -> None:
    found = Systemd().parse_status(SYSTEMCTL_LIST_UNITS)
    assert sorted(found) == [
        "atlas-app",
        "ceph-osd@3",
        "frr",
        "getty@tty1",
        "systemd-networkd",
        "systemd-sysctl",
        "web",
    ]  # a unit only referenced (not-found) is none of the host's
    assert [n for n, s in found.items() if s.running] == ["atlas-app", "ceph-osd@3", "systemd-networkd"]
    assert found["frr"].state == "failed" and found["frr"].detail == "failed: FRRouting"
    assert found["systemd-sysctl"].state == "active" and not found["systemd-sysctl"].running  # oneshot
    assert found["web"].state == "activating" and found["web"].detail == "auto-restart: Web"


def test_systemctl_complaints_are_no_services() -> None:
    complaint = "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    assert Systemd().parse_status(complaint + "Failed to connect to bus: Host is down\n") == {}
    assert Systemd().parse_status("") == {}
    assert "'" not in Systemd().status_command and "$" not in Systemd().status_command  # a constant


@pytest.mark.parametrize("name", SERVICE_MANAGERS.names)
def test_every_manager_has_its_side_of_the_playbooks(name: str) -> None:
    """host-baseline.yml and image-apply.yml include these files by the manager's name."""
    assert SERVICE_MANAGERS.get("test", name).playbook_variables()["atlas_service_manager"] == name
    folder = PLAYBOOKS / "services" / name
    for task_file in ("vars.yml", "frr.yml", "image-services.yml", "image-services-removed.yml"):
        assert (folder / task_file).is_file(), folder / task_file


def test_the_playbooks_assume_no_service_manager_themselves() -> None:
    top_level: list[Path] = sorted(PLAYBOOKS.glob("*.yml"))
    assert top_level and all("supervisor" not in p.read_text().lower() for p in top_level)


def test_supervisord_is_gone() -> None:
    assert "supervisord" not in SERVICE_MANAGERS
    assert not (PLAYBOOKS / "services" / "supervisord").exists()


def test_the_sweep_leaves_a_server_with_an_unknown_manager_not_checked_naming_it() -> None:
    fra1, devices = site({"fra1-r02-cmp1": "runit"})
    server = devices["fra1-r02-cmp1"]
    found = {t.name: t for t in targets([server], lambda d: Credential(username="never-used"))}
    [result] = check_hosts(SiteView(site=fra1, devices=devices), found, limit=1)  # no SSH: refused first
    assert result.target == "fra1-r02-cmp1" and result.failed
    assert result.detail.startswith(RUNIT) and "is not one Atlas knows (known: systemd)" in result.detail
