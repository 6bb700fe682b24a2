"""Draining work off hosts before they are changed, and giving it back after: one port, with an
adapter per scheduler (the lab's own services here; Mesos maintenance and Kubernetes cordon/evict
plug in the same way)."""

from __future__ import annotations

from typing import Protocol

from atlas.core.errors import Failed
from atlas.core.model import Device


class DrainFailed(Failed):
    pass


class Workloads(Protocol):
    def drain(self, host: Device) -> None:
        """Returns once the host takes no new work; raises DrainFailed otherwise."""

    def undrain(self, host: Device) -> None:
        """Returns once the host takes work again; raises DrainFailed otherwise."""

    def drained(self, host: Device) -> bool: ...
