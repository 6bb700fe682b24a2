"""Rollout decisions on plain data: scope, waves spread over racks, the canary, the failure budget,
and the lab's image artifacts being reproducible (publishing them twice must be a no-op)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from atlas.core.model import Device, DeviceStatus, Rack, Role, Site
from atlas.lab.images import build
from atlas.runbooks.rollout import (
    RolloutRefused,
    WaveOutcome,
    approval_question,
    artifact,
    hosts_in_scope,
    plan_rollout,
    scope_problems,
    scoped_hosts,
    start_report,
    stops_rollout,
    wave_stops,
)


def server(name: str, rack: str, version: str | None = None, role: Role = Role.COMPUTE) -> Device:
    return Device(
        name=name,
        site="fra1",
        rack=rack,
        role=role,
        status=DeviceStatus.ACTIVE,
        device_type="srv",
        custom_fields={"image_version": version},
    )


def fleet(per_rack: dict[str, int]) -> list[Device]:
    return [server(f"{rack}-cmp{i}", rack) for rack, n in per_rack.items() for i in range(1, n + 1)]


def rack_of(name: str) -> str:
    return name.rsplit("-", 1)[0]


def test_waves_take_one_host_per_rack_while_racks_last() -> None:
    plan = plan_rollout(fleet({"r1": 3, "r2": 3, "r3": 3}), "v2", canary=1, wave_size=3)
    assert [len(w) for w in plan.waves] == [1, 3, 3, 2]
    for wave in plan.waves:
        assert max(Counter(rack_of(h) for h in wave).values()) == 1
    assert sorted(plan.hosts) == sorted(d.name for d in fleet({"r1": 3, "r2": 3, "r3": 3}))


def test_fullest_racks_go_first_and_a_wave_wider_than_the_racks_doubles_up_evenly() -> None:
    plan = plan_rollout(fleet({"r1": 1, "r2": 4}), "v2", canary=1, wave_size=2)
    assert plan.waves[0] == ["r2-cmp1"]  # the canary comes from the fullest rack
    assert all(len(set(map(rack_of, w))) == len(w) for w in plan.waves[:2])
    wide = plan_rollout(fleet({"r1": 2, "r2": 2}), "v2", canary=1, wave_size=4)
    assert [sorted(Counter(map(rack_of, w)).values()) for w in wide.waves] == [[1], [1, 2]]


def test_hosts_on_the_version_are_left_alone_and_a_finished_rollout_plans_nothing() -> None:
    hosts = [server("r1-cmp1", "r1", "v2"), server("r1-cmp2", "r1", "v1"), server("r2-cmp1", "r2")]
    plan = plan_rollout(hosts, "v2", canary=1, wave_size=5)
    assert plan.on_version == ["r1-cmp1"] and sorted(plan.hosts) == ["r1-cmp2", "r2-cmp1"]
    assert plan.before == {"r1-cmp1": "v2", "r1-cmp2": "v1", "r2-cmp1": None}
    done = plan_rollout(
        [h.model_copy(update={"custom_fields": {"image_version": "v2"}}) for h in hosts], "v2", 1, 5
    )
    assert done.waves == [] and len(done.on_version) == 3


def test_scope_is_active_servers_of_the_rack_and_role() -> None:
    hosts = [
        server("r1-cmp1", "r1"),
        server("r1-sto1", "r1", role=Role.STORAGE),
        server("r2-cmp1", "r2").model_copy(update={"status": DeviceStatus.PLANNED}),
        Device(
            name="r1-leaf1",
            site="fra1",
            rack="r1",
            role=Role.LEAF,
            status=DeviceStatus.ACTIVE,
            device_type="sw",
        ),
    ]
    site = Site(
        name="fra1", racks=(Rack(name="r1", site="fra1"), Rack(name="r2", site="fra1")), devices=tuple(hosts)
    )
    assert [d.name for d in hosts_in_scope(site, None, None)] == ["r1-cmp1", "r1-sto1"]
    assert [d.name for d in hosts_in_scope(site, "r1", "storage")] == ["r1-sto1"]
    assert hosts_in_scope(site, "r2", None) == []
    assert scope_problems(site, "r9", "leaf") == [
        "rack 'r9' is not in site fra1",
        "role 'leaf' is not a server role (compute, storage)",
    ]


def test_a_failing_canary_always_stops_later_waves_only_beyond_the_budget() -> None:
    assert stops_rollout(1, budget=5, is_canary=True)
    assert not stops_rollout(0, budget=0, is_canary=True)
    assert not stops_rollout(2, budget=2, is_canary=False)
    assert stops_rollout(3, budget=2, is_canary=False)


def test_lab_images_are_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first, again = build("v1", tmp_path / "a.tar.gz"), build("v1", tmp_path / "b.tar.gz")
    assert first.read_bytes() == again.read_bytes()
    assert build("v1", tmp_path / "c.tar.gz", broken=True).read_bytes() != first.read_bytes()


def test_a_scope_without_an_active_server_is_refused() -> None:
    site = Site(name="fra1", racks=(Rack(name="r1", site="fra1"),), devices=(server("r1-cmp1", "r1"),))
    assert [d.name for d in scoped_hosts(site, "r1", None)] == ["r1-cmp1"]
    with pytest.raises(RolloutRefused, match="no active server in fra1 rack r1 role storage"):
        scoped_hosts(site, "r1", "storage")


def test_the_report_follows_each_wave_and_a_stop_leaves_the_rest_not_reached() -> None:
    hosts = [server("r1-cmp1", "r1", "v1"), server("r1-cmp2", "r1", "v1"), server("r2-cmp1", "r2", "v2")]
    plan = plan_rollout(hosts, "v2", canary=1, wave_size=1)
    report = start_report(plan, hosts, dry_run=False)
    assert {h: o.result for h, o in report.hosts.items()} == {
        "r1-cmp1": "planned",
        "r1-cmp2": "planned",
        "r2-cmp1": "already on version",
    }
    canary = WaveOutcome(moved=["r1-cmp1"])
    report.after_wave(canary, plan.waves[0])
    assert wave_stops(0, canary, failed=0, budget=0) is None
    failing = WaveOutcome(failed={"r1-cmp2": "health check"}, rolled_back=["r1-cmp2"])
    report.after_wave(failing, plan.waves[1])
    assert report.changed == ["r1-cmp1"] and report.hosts["r1-cmp1"].after == "v2"
    assert report.hosts["r1-cmp2"].result == "rolled back" and report.hosts["r1-cmp2"].after == "v1"
    assert wave_stops(1, failing, failed=1, budget=0) == "wave 1 failed: r1-cmp2: health check"
    planned = start_report(plan, hosts, dry_run=False)
    planned.stop("canary failed: r1-cmp1: x")
    assert planned.hosts["r1-cmp2"].result == "not reached" and planned.stopped == "canary failed: r1-cmp1: x"


def test_the_report_artifact_has_every_hosts_before_and_after() -> None:
    hosts = [server("r1-cmp1", "r1", "v1"), server("r2-cmp1", "r2", "v2")]
    plan = plan_rollout(hosts, "v2", canary=1, wave_size=1)
    key, title, summary, table = artifact(start_report(plan, hosts, dry_run=True), "fra1")
    assert (key, title) == ("image-rollout-fra1", "Image rollout of v2 (dry run: plan)")
    assert summary == ["canary: r1-cmp1", "1 already on version, 1 planned"]
    assert table[0] == {"host": "r1-cmp1", "rack": "r1", "before": "v1", "after": "v1", "result": "planned"}
    assert "* r1-cmp1: moved\n" in approval_question({"r1-cmp1": "moved"}, ["r2-cmp1"])
