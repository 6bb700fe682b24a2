"""Per-device work in parallel with a bounded number of SSH sessions (sessions, not CPU, are the cost)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from atlas.core.model import Device

MAX_PARALLEL_SESSIONS = 8


def each_device[T](
    func: Callable[[Device], T], devices: Iterable[Device], limit: int = MAX_PARALLEL_SESSIONS
) -> list[T]:
    """`func` on every device, results in the devices' order."""
    todo = list(devices)
    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=min(limit, len(todo))) as pool:
        return list(pool.map(func, todo))
