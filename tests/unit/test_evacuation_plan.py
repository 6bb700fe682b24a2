"""Evacuation decisions on plain data: what a rack or a site takes out, what must remain, one site
at a time, restoring exactly what an evacuation recorded, and the verdicts of its steps (Ceph's
noout flags, who answers the service) and its report."""

from __future__ import annotations

from collections import Counter

from atlas.core.model import DeviceStatus, Rack, RackStatus, Site
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.runbooks.evacuation import (
    EvacuationPlan,
    Scope,
    noout_differs,
    plan_evacuation,
    plan_markdown,
    plan_restore,
    plan_summary,
    service_problems,
    why,
)
from atlas.runbooks.evacuation_steps import EvacuationReport, Step
from atlas.runbooks.traffic import Answers
from atlas.sot.topology import load_topology


def lab_sites(active_racks: tuple[str, ...] = ("fra1-r01", "ams1-r01")) -> dict[str, Site]:
    """The default lab with these racks active (their devices too), the others planned."""
    sites = {}
    for s in load_topology(DEFAULT_TOPOLOGY).sites:
        racks = tuple(
            Rack(
                name=r.name,
                site=s.name,
                status=RackStatus.ACTIVE if r.name in active_racks else RackStatus.PLANNED,
            )
            for r in s.racks
        )
        devices = tuple(
            d.model_copy(
                update={
                    "status": DeviceStatus.ACTIVE
                    if d.rack is None or d.rack in active_racks
                    else DeviceStatus.PLANNED
                }
            )
            for d in s.devices
        )
        sites[s.name] = s.model_copy(update={"racks": racks, "devices": devices})
    return sites


def evacuated(sites: dict[str, Site], names: set[str], ticket: str = "CHG-1") -> dict[str, Site]:
    return {
        n: s.model_copy(
            update={
                "devices": tuple(
                    d.model_copy(update={"custom_fields": {**d.custom_fields, "evacuation": ticket}})
                    if d.name in names
                    else d
                    for d in s.devices
                )
            }
        )
        for n, s in sites.items()
    }


def test_a_rack_takes_its_servers_leaves_and_ceph_rack_and_leaves_the_other_site_serving() -> None:
    plan = plan_evacuation(lab_sites(), Scope("fra1", "fra1-r01"))
    assert plan.problems == []
    assert plan.servers == ["fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"]
    assert plan.announcing == ["fra1-r01-cmp1", "fra1-r01-cmp2"]
    assert plan.service_addresses == ["198.19.3.254"]
    assert plan.switches == ["fra1-r01-leaf1", "fra1-r01-leaf2"]
    assert plan.ceph_buckets == ["fra1-r01"]
    assert plan.remaining == ["ams1-r01-cmp1", "ams1-r01-cmp2"]
    text = plan_markdown(plan, "power work", "CHG-1")
    assert "Evacuate rack fra1-r01 (CHG-1)" in text and "cost out fra1-r01-leaf1, fra1-r01-leaf2" in text


def test_a_site_takes_its_spines_too_and_only_live_servers_count_as_remaining() -> None:
    plan = plan_evacuation(
        lab_sites(), Scope("ams1"), answering=["fra1-r01-cmp1", "fra1-r01-cmp2", "ams1-r01-cmp1"]
    )
    assert plan.problems == []
    assert "ams1-spine1" in plan.switches and "ams1-r02-leaf1" not in plan.switches  # planned rack
    assert plan.ceph_buckets == ["ams1"]
    assert plan.remaining == ["fra1-r01-cmp1", "fra1-r01-cmp2"]


def test_what_remains_must_carry_the_load() -> None:
    plan = plan_evacuation(lab_sites(), Scope("fra1"), answering=["fra1-r01-cmp1", "ams1-r01-cmp1"])
    assert plan.problems == [
        "what remains could not carry the load: 1 server(s) outside the site fra1 serve the service and "
        "answer now, the site fra1 takes 2 out (headroom 1)"
    ]
    bigger = plan_evacuation(lab_sites(), Scope("fra1"), answering=["ams1-r01-cmp1"], headroom=2.0)
    assert bigger.problems == []  # servers that can take three times their load


def test_never_more_than_one_site_at_a_time() -> None:
    sites = evacuated(lab_sites(), {"fra1-r01-cmp1", "fra1-r01-leaf1"})
    problems = plan_evacuation(sites, Scope("ams1", "ams1-r01")).problems
    assert "site fra1 is evacuated: restore it first (never more than one site at a time)" in problems
    # the evacuated servers of fra1 do not count as capacity either
    assert any("could not carry the load" in p for p in problems)
    assert plan_evacuation(sites, Scope("fra1")).problems == []  # the same site may grow its evacuation


def test_a_rerun_finds_what_is_done_and_a_restore_undoes_exactly_that() -> None:
    marked = {"fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1", "fra1-r01-leaf1", "fra1-r01-leaf2"}
    sites = evacuated(lab_sites(), marked)
    again: EvacuationPlan = plan_evacuation(sites, Scope("fra1", "fra1-r01"))
    assert again.problems == [] and again.to_do == [] and set(again.already) == marked
    back = plan_restore(sites, Scope("fra1", "fra1-r01"))
    assert back.servers == ["fra1-r01-cmp1", "fra1-r01-cmp2", "fra1-r01-sto1"]
    assert back.switches == ["fra1-r01-leaf1", "fra1-r01-leaf2"] and back.ceph_buckets == ["fra1-r01"]
    assert (
        plan_restore(lab_sites(), Scope("fra1", "fra1-r01")).devices == []
    )  # nothing recorded: nothing to undo


def test_an_unknown_scope_is_named() -> None:
    assert plan_evacuation(lab_sites(), Scope("nowhere")).problems == ["site 'nowhere' is not in NetBox"]
    assert plan_restore(lab_sites(), Scope("fra1", "fra1-r99")).problems == [
        "rack 'fra1-r99' is not in site fra1"
    ]


def answers(by_host: dict[str, int], errors: dict[str, int] | None = None) -> Answers:
    return Answers(by_host=Counter(by_host), errors=Counter(errors or {}))


RACK_SERVERS = ["fra1-r01-cmp1", "fra1-r01-cmp2"]


def test_evacuated_means_nobody_in_the_scope_answers_and_no_request_fails() -> None:
    assert service_problems(answers({"ams1-r01-cmp1": 40}), RACK_SERVERS, back=False) == []
    assert service_problems(
        answers({"ams1-r01-cmp1": 30, "fra1-r01-cmp2": 10}), RACK_SERVERS, back=False
    ) == ["still answered by fra1-r01-cmp2"]
    assert service_problems(answers({"ams1-r01-cmp1": 38}, {"URLError": 2}), RACK_SERVERS, back=False) == [
        "2 request(s) failed ({'URLError': 2})"
    ]


def test_restored_means_every_server_of_the_scope_answers_again() -> None:
    both = answers({"ams1-r01-cmp1": 20, "fra1-r01-cmp1": 10, "fra1-r01-cmp2": 10})
    assert service_problems(both, RACK_SERVERS, back=True) == []
    assert service_problems(answers({"ams1-r01-cmp1": 30, "fra1-r01-cmp1": 10}), RACK_SERVERS, back=True) == [
        "not answered by fra1-r01-cmp2 yet"
    ]


def test_noout_is_set_only_where_it_differs() -> None:
    flags = {"fra1-r01": {"noout"}, "fra1-r02": set[str]()}
    assert noout_differs(["fra1-r01", "fra1-r02", "fra1"], flags, on=True) == ["fra1-r02", "fra1"]
    assert noout_differs(["fra1-r01", "fra1-r02"], flags, on=False) == ["fra1-r01"]


def test_the_report_lists_the_plan_the_approval_and_says_when_nothing_changed() -> None:
    plan = plan_evacuation(lab_sites(), Scope("fra1", "fra1-r01"))
    summary = plan_summary(plan)
    assert summary["switches"] == ["fra1-r01-leaf1", "fra1-r01-leaf2"] and summary["already done"] == []
    report = EvacuationReport(scope=str(plan.scope), action="evacuate", dry_run=False, plan=summary)
    report.approval = "approved by on-call: go"
    assert "servers: fra1-r01-cmp1, fra1-r01-cmp2, fra1-r01-sto1" in report.summary()
    assert "already done: none" in report.summary() and "approved by on-call: go" in report.summary()
    assert report.summary()[-1] == "no change: the scope was already in that state"
    report.timeline.append(Step(at="03:00:01", step="drain", changed=["fra1-r01-cmp1"], verified="read back"))
    report.timeline.append(Step(at="03:00:09", step="cost out", changed=[], verified="traffic avoids"))
    assert report.changed == ["fra1-r01-cmp1"] and report.summary()[-1] == "approved by on-call: go"
    assert report.rows()[1] == {
        "at": "03:00:09",
        "step": "cost out",
        "changed": "-",
        "verified": "traffic avoids",
    }
    assert report.title == "evacuate rack fra1-r01"
    assert why("evacuate", "CHG-1", "power work") == "evacuate CHG-1: power work"
