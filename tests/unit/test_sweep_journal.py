"""When the sweep writes to a device's journal: only on news, never on every run. And what its report
says: a row per device and area, remediated findings, devices that could not be checked."""

from __future__ import annotations

import pytest

from atlas.core.model import Device
from atlas.core.run import Result, Results
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.site import SiteView
from atlas.runbooks.sweep import (
    Area,
    Compliance,
    after_remediation,
    artifact,
    compliance,
    incomplete,
    journal_line,
    rows,
    unaddressed,
)
from atlas.sot.schema import COMPLIANCE_FIELD
from atlas.sot.topology import load_topology

CLEAN = Result(target="fra1-r01-leaf1", step="switches", detail="as intended")
DRIFT = Result(
    target="fra1-r01-leaf1",
    step="switches",
    changed=True,
    diff=("interface swp3: description x",),
    detail="1 line(s)",
)
DOWN = Result.failure("fra1-r01-leaf1", "switches", "SSH timed out")


def device(state: str | None) -> Device:
    topo = load_topology(DEFAULT_TOPOLOGY)
    leaf = next(d for d in topo.all_devices() if d.name == "fra1-r01-leaf1")
    return leaf.model_copy(update={"custom_fields": {COMPLIANCE_FIELD: state}})


def test_compliance_never_counts_an_unchecked_device_as_compliant() -> None:
    assert compliance([CLEAN, DRIFT, DOWN]) == Compliance.NOT_CHECKED
    assert compliance([CLEAN, DRIFT]) == Compliance.DRIFT
    assert compliance([CLEAN]) == Compliance.COMPLIANT


@pytest.mark.parametrize(
    ("before", "found"),
    [("compliant", [CLEAN]), (None, [CLEAN]), ("drift", [DRIFT]), ("not checked", [DOWN])],
)
def test_no_entry_when_nothing_is_new(before: str | None, found: list[Result]) -> None:
    assert journal_line(device(before), compliance(found), found, []) is None


def test_new_drift_is_written_with_what_differs() -> None:
    line = journal_line(device("compliant"), Compliance.DRIFT, [DRIFT], [])
    assert line is not None and line.startswith("config-sweep: compliant → drift")
    assert "`interface swp3: description x`" in line


def test_resolved_drift_and_lost_contact_are_news() -> None:
    assert (
        journal_line(device("drift"), Compliance.COMPLIANT, [CLEAN], []) == "config-sweep: drift → compliant"
    )
    lost = journal_line(device("compliant"), Compliance.NOT_CHECKED, [DOWN], [])
    assert lost is not None and "SSH timed out" in lost


def test_drift_remediated_in_the_same_run_is_news() -> None:
    fixed = Result(target="fra1-r01-leaf1", step="switch-config", changed=True, diff=("x",), detail="applied")
    line = journal_line(device("compliant"), Compliance.COMPLIANT, [CLEAN], [fixed])
    assert line is not None and line.startswith("config-sweep: drift found and remediated, now compliant")


def test_device_output_cannot_break_the_journal_markdown() -> None:
    nasty = DRIFT.model_copy(update={"diff": ("description `x`\x1b[2J",)})
    line = journal_line(device("compliant"), Compliance.DRIFT, [nasty], [])
    assert line is not None and "\x1b" not in line and "`x`" not in line


# --- findings as a report, remediation, and devices that cannot be checked -------------------------
def fra1() -> SiteView:
    topo = load_topology(DEFAULT_TOPOLOGY)
    site = topo.site_as_read("fra1")
    return SiteView(site=site, devices={d.name: d for d in topo.all_devices()})


HOST = Result(target="fra1-r01-cmp1", step="hosts", detail="as the baseline")


def test_the_table_has_a_row_per_device_and_area_with_its_status_and_lines() -> None:
    table = rows(Results([DRIFT, HOST, DOWN.model_copy(update={"step": "cabling"})]))
    assert [(r["device"], r["area"], r["status"]) for r in table] == [
        ("fra1-r01-cmp1", "hosts", "compliant"),
        ("fra1-r01-leaf1", "cabling", "not checked"),
        ("fra1-r01-leaf1", "switches", "drift"),
    ]
    assert table[2]["diff"] == "interface swp3: description x" and table[2]["result"] == "changed"


def test_a_remediated_finding_is_in_line_and_a_failed_remediation_is_a_finding() -> None:
    fixed = Result(target="fra1-r01-leaf1", step="switch-config", changed=True, detail="applied")
    refused = Result.failure("fra1-r01-cmp1", "host-baseline.yml", "unreachable")
    after = after_remediation(Results([DRIFT, HOST]), Results([fixed, refused]), dry_run=False)
    assert not after[0].changed and after[0].detail == "remediated; found: 1 line(s)"
    assert after[1] == HOST and after[2] == refused
    assert after_remediation(Results([DRIFT]), Results([fixed]), dry_run=True) == [DRIFT]


def test_a_device_without_an_address_is_not_checked_in_each_area_that_checks_it() -> None:
    view = fra1()
    leaf = view.site.device("fra1-r01-leaf1")
    assert leaf is not None
    devices = tuple(
        d.model_copy(update={"mgmt_address": None}) if d == leaf else d for d in view.site.devices
    )
    view = SiteView(site=view.site.model_copy(update={"devices": devices}), devices=view.devices)
    found = unaddressed(view, [Area.SWITCHES, Area.HOSTS, Area.CABLING])
    assert [(r.target, r.step) for r in found] == [
        ("fra1-r01-leaf1", "switches"),
        ("fra1-r01-leaf1", "cabling"),
    ]
    assert all(r.failed and "no management address" in r.error for r in found)


def test_a_partial_sweep_names_every_device_not_checked() -> None:
    assert incomplete(Results([CLEAN, DRIFT])) is None
    assert incomplete(Results([CLEAN, DOWN])) == (
        "partial sweep: 1 device(s) not checked: fra1-r01-leaf1 (switches): SSH timed out"
    )
    _, _, summary, _ = artifact(Results([DRIFT, HOST, DOWN]), ["fra1"], remediation_dry_run=False)
    assert summary == [
        "devices checked: **2**",
        "drift: **1** fra1-r01-leaf1",
        "not checked: **1** fra1-r01-leaf1",
    ]
