"""Atlas as a larger install runs it: a Prefect server on PostgreSQL, prefect.yaml registered with
`prefect deploy --all` for the process work pool, two workers that take one flow run each. Two
bring-up dry runs started together land on both workers, and their results come back from the
storage every worker shares."""

from __future__ import annotations

import time
from collections.abc import Iterator

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


def test_two_workers_run_two_racks_at_once_and_share_results(pool: WorkPoolLab) -> None:
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
        # each worker takes one run at a time: two runs that overlap ran on two workers
        assert all(r.start_time and r.end_time for r in runs)
        assert max(r.start_time for r in runs if r.start_time) < min(r.end_time for r in runs if r.end_time)
        reports = [r.state.result() for r in runs if r.state]
    assert all(isinstance(r, BringupReport) and r.dry_run and r.failed == 0 for r in reports)
    assert {(r.site, r.rack) for r in reports if isinstance(r, BringupReport)} == set(RACKS)
