"""One run per rack at a time, whatever the flow: Prefect global concurrency limits, one per rack,
created before use and strict, so a missing limit fails the run instead of silently not limiting.
A rack-bringup and a fabric-apply, ceph-osd-enroll or image-rollout wave on the same rack exclude
each other as two bring-ups do."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

from atlas.core.model import Device

# A run renews its lease while it holds the slot; a killed run's slot frees when the lease ends, so a
# re-run after a crash waits at most this long (Prefect's minimum).
LEASE_S = 60


def rack_limit_name(site: str, rack: str) -> str:
    return f"rack-{site}-{rack}"


def rack_limits(devices: Iterable[Device]) -> list[str]:
    """The limits of every rack these devices sit in (spines and the core sit in none)."""
    return sorted({rack_limit_name(d.site, d.rack) for d in devices if d.rack})


def _ensure_limits(names: list[str]) -> list[str]:
    """Every limit exists with one slot; returns those another run holds now. One read per limit."""
    busy = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                found = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                # a concurrent run may create it between this read and the write
                with suppress(ObjectAlreadyExists):
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                continue
            if found.limit != 1:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1))
            if found.active_slots > 0:
                busy.append(name)
    return busy


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@contextmanager
def exclusive(*names: str, timeout_s: float = 3600) -> Iterator[None]:
    """Holds every named limit at once (Prefect takes them together or not at all)."""
    if not names:
        yield
        return
    busy = _ensure_limits(list(names))
    if busy:
        # only a hint for whoever watches the run: the limits themselves decide who goes first
        _logger().info("waiting for %s: another run is changing it", ", ".join(busy))
    with concurrency(list(names), occupy=1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_S):
        yield
