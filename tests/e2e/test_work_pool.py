"""Atlas as a larger install runs it: a Prefect server on PostgreSQL, prefect.yaml registered with
`prefect deploy --all` for the process work pool, two workers that take one flow run each. Two
bring-up dry runs started together land on both workers, and their results come back from the
storage every worker shares."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

from atlas.lab.lab import Lab
from atlas.lab.pool import WorkPoolLab
from atlas.locks import exclusive, rack_limit_name
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


def final(runs: list[FlowRun], which: list[int], timeout: float = 600) -> list[FlowRun]:
    """The runs, read again until those at `which` are in a final state (or the timeout passes)."""
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + timeout
        while True:
            runs = [client.read_flow_run(r.id) for r in runs]
            if all(runs[i].state and runs[i].state.is_final() for i in which) or time.monotonic() > deadline:
                return runs
            time.sleep(1)


def test_two_workers_run_two_racks_at_once_and_share_results(pool: WorkPoolLab) -> None:
    """The first rack's lock is held, so its run starts and waits; the second rack's run can only
    complete meanwhile on a second worker (each worker takes one run at a time)."""
    with exclusive(rack_limit_name(*RACKS[0])):
        started = [
            run_deployment(
                "rack-bringup/rack-bringup",
                parameters={"site": site, "rack": rack, "dry_run": True},
                timeout=0,
            )
            for site, rack in RACKS
        ]
        waiting, other = final(started, [1])
        assert other.state is not None and other.state.type.value == "COMPLETED"
        assert waiting.state is not None and waiting.state.type.value == "RUNNING", waiting.state
    runs = final([waiting, other], [0, 1])
    assert [r.state.type.value if r.state else None for r in runs] == ["COMPLETED", "COMPLETED"]
    assert {r.work_pool_name for r in runs} == {"atlas"}
    reports = [r.state.result() for r in runs if r.state]
    assert all(isinstance(r, BringupReport) and r.dry_run and r.failed == 0 for r in reports)
    assert {(r.site, r.rack) for r in reports if isinstance(r, BringupReport)} == set(RACKS)
