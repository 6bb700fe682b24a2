"""Bad form values, refused by the flow's own parameter validation (the same that checks a run
started from the UI or a shell) before the flow's first step: nothing is read, nothing touched, and
every bad field is named."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import Flow
from prefect.exceptions import ParameterTypeError

from flows.ceph_enroll import ceph_osd_enroll
from flows.config_sweep import config_sweep
from flows.evacuate import evacuate, restore
from flows.fabric import fabric_apply, fabric_cost_in, fabric_cost_out
from flows.image_rollout import image_rollout
from flows.rack_bringup import rack_bringup

WHY = {"reason": "PDU swap", "ticket": "CHG-1"}
BAD: dict[str, tuple[Flow[Any, Any], dict[str, Any], str]] = {
    "site with a space": (rack_bringup, {"site": "fra 1", "rack": "fra1-r02"}, "site"),
    "rack with a CLI separator": (rack_bringup, {"site": "fra1", "rack": "r02;reload"}, "rack"),
    "rack with a newline": (rack_bringup, {"site": "fra1", "rack": "r02\nwrite erase"}, "rack"),
    "missing rack": (rack_bringup, {"site": "fra1"}, "rack"),
    "dry run as a word": (rack_bringup, {"site": "fra1", "rack": "r02", "dry_run": "perhaps"}, "dry_run"),
    "switch name with a space": (fabric_apply, {"site": "fra1", "switches": ["fra1 spine1"]}, "switches.0"),
    "rack starting with a dash": (fabric_apply, {"site": "fra1", "rack": "-r01"}, "rack"),
    "reason too short": (fabric_cost_out, {"switch": "fra1-spine1", "reason": "x"}, "reason"),
    "switch with a shell substitution": (fabric_cost_in, {"switch": "$(reboot)", "reason": "done"}, "switch"),
    "unknown sweep area": (config_sweep, {"areas": ["firmware"]}, "areas.0"),
    "no SSH session allowed": (config_sweep, {"max_sessions": 0}, "max_sessions"),
    "ramp step over 1": (ceph_osd_enroll, {"hosts": ["fra1-r01-sto1"], "step": 2}, "step"),
    "negative target weight": (
        ceph_osd_enroll,
        {"hosts": ["fra1-r01-sto1"], "target_weight": -1},
        "target_weight",
    ),
    "host name with a slash": (ceph_osd_enroll, {"hosts": ["../sto1"]}, "hosts.0"),
    "image version with a path": (image_rollout, {"version": "../v1", "site": "fra1"}, "version"),
    "canary of none": (image_rollout, {"version": "v1", "site": "fra1", "canary": 0}, "canary"),
    "waves of a thousand": (image_rollout, {"version": "v1", "site": "fra1", "wave_size": 1000}, "wave_size"),
    "unknown pause": (image_rollout, {"version": "v1", "site": "fra1", "pause": "sometimes"}, "pause"),
    "unknown role": (image_rollout, {"version": "v1", "site": "fra1", "role": "router"}, "role"),
    "ticket with a newline": (
        evacuate,
        {"site": "fra1", "reason": "PDU swap", "ticket": "CHG-1\nrm"},
        "ticket",
    ),
    "no headroom": (evacuate, {"site": "fra1", **WHY, "headroom": 0}, "headroom"),
    "approval timeout of 5 s": (
        evacuate,
        {"site": "fra1", **WHY, "approval_timeout_s": 5},
        "approval_timeout_s",
    ),
    "missing ticket": (restore, {"site": "fra1", "reason": "PDU swap"}, "ticket"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_form_value_is_refused_and_named(case: str) -> None:
    flow, parameters, field = BAD[case]
    with pytest.raises(ParameterTypeError) as info:
        flow.validate_parameters(parameters)
    assert f" - {field}:" in str(info.value)


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ParameterTypeError) as info:
        image_rollout.validate_parameters(
            {"version": "v1;x", "site": "fra 1", "canary": 0, "wave_size": 0, "pause": "later"}
        )
    assert [
        f for f in ("version", "site", "canary", "wave_size", "pause") if f" - {f}:" not in str(info.value)
    ] == []


def test_good_values_pass() -> None:
    assert evacuate.validate_parameters({"site": "fra1", **WHY})["rack"] == ""
    assert image_rollout.validate_parameters({"version": "2026.11.2", "site": "fra1"})["role"] == "any"
