"""When the sweep writes to a device's journal: only on news, never on every run."""

from __future__ import annotations

import pytest

from atlas.core.model import Device
from atlas.core.run import Result
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.sweep import Compliance, compliance, journal_line
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
