"""Atlas as a larger install runs it: a Prefect server on PostgreSQL, prefect.yaml registered with
`prefect deploy --all` for the process work pool, two workers that take one flow run each. Two
bring-up dry runs started together land on both workers, and their results come back from the
storage every worker shares."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from atlas.lab.lab import Lab
from atlas.lab.pool import WorkPoolLab
from flows.rack_bringup import BringupReport

RACKS = (("fra1", "fra1-r01"), ("ams1", "ams1-r01"))


@pytest.fixture(scope="module")
def pool(lab: Lab) -> Iterator[WorkPoolLab]:
    pool = WorkPoolLab(lab.cfg, lab.secrets, workers=2)
    pool.up()
    with temporary_settings({PREFECT_API_URL: pool.url, PREFECT_RESULTS_LOCAL_STORAGE_PATH: pool.results}):
        yield pool
    pool.down()


def test_a_second_pool_up_changes_nothing(pool: WorkPoolLab) -> None:
    assert pool.up() == []


def submitted_by(pool: WorkPoolLab, runs: list[str], timeout: float = 120) -> dict[str, str]:
    """Which worker submitted each run, from the events workers emit (stored a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        body = {"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]}}, "limit": 50}
        events = httpx.post(f"{pool.url}/events/filter", json=body, timeout=30).json()["events"]
        found = {
            related["prefect.resource.id"].removeprefix("prefect.flow-run."): event["resource"][
                "prefect.resource.id"
            ]
            for event in events
            for related in event.get("related", [])
            if related.get("prefect.resource.role") == "flow-run"
        }
        if all(r in found for r in runs) or time.monotonic() > deadline:
            return {r: found.get(r, "") for r in runs}
        time.sleep(2)


def test_two_workers_share_two_racks_runs_and_their_results(pool: WorkPoolLab) -> None:
    started = [
        run_deployment(
            "rack-bringup/rack-bringup", parameters={"site": site, "rack": rack, "dry_run": True}, timeout=0
        )
        for site, rack in RACKS
    ]
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 600
        while True:
            runs = [client.read_flow_run(r.id) for r in started]
            if all(r.state is not None and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert [r.state.type.value if r.state else None for r in runs] == ["COMPLETED", "COMPLETED"]
    assert {r.work_pool_name for r in runs} == {"atlas"}
    # each worker takes one run at a time and a run outlasts a worker's poll: both workers took one
    workers = submitted_by(pool, [str(r.id) for r in runs])
    assert sorted(workers.values()) == [f"prefect.worker.process.{w.name}" for w in pool.workers()], workers
    reports = [r.state.result() for r in runs if r.state]
    assert all(isinstance(r, BringupReport) and r.dry_run and r.failed == 0 for r in reports)
    assert {(r.site, r.rack) for r in reports if isinstance(r, BringupReport)} == set(RACKS)
