"""One run per rack at a time: Prefect global concurrency limits, created before use and strict,
so a missing limit fails the run instead of silently not limiting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

# A run renews its lease while it holds the slot; a killed run's slot frees when the lease ends, so a
# re-run after a crash waits at most this long (Prefect's minimum).
LEASE_S = 60


def rack_limit_name(flow: str, site: str, rack: str) -> str:
    return f"{flow}-{site}-{rack}"


def ensure_limit(name: str, limit: int = 1) -> None:
    # a concurrent run may create it between the read and the write of the upsert
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit)


@contextmanager
def exclusive(name: str, timeout_s: float = 3600) -> Iterator[None]:
    ensure_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_S):
        yield
