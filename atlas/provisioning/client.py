"""What a flow asks of the provisioning service: is DHCP up, these reservations for this rack, the
URL a server boots an image from."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from atlas.core.errors import AtlasError
from atlas.images.catalog import ARTIFACT
from atlas.provisioning.kea import Reservation


class ProvisioningError(AtlasError, RuntimeError):
    pass


class ProvisioningClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def image_url(self, version: str) -> str:
        return f"{self.url}/images/{version}/{ARTIFACT}"

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as e:
            try:
                return e.code, dict(json.loads(e.read() or b"{}"))
            except ValueError:
                return e.code, {"error": e.reason}
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ProvisioningError(
                f"the provisioning service at {self.url} does not answer: {reason}"
            ) from None

    def problems(self) -> list[str]:
        """Why servers could not boot from the network now (empty: the service and its DHCP run)."""
        try:
            status, health = self._call("GET", "/health")
        except ProvisioningError as e:
            return [str(e)]
        if status != 200 or health.get("dhcp") != "running":
            return [
                f"the provisioning service at {self.url}: its DHCP server is {health.get('dhcp', 'unknown')}"
            ]
        return []

    def put(self, scope: str, reservations: list[Reservation]) -> bool:
        """The rack's reservations, replacing what it had; True when DHCP changed."""
        status, answer = self._call("PUT", f"/reservations/{scope}", [r.to_json() for r in reservations])
        if status != 200:
            raise ProvisioningError(
                f"the provisioning service refused the reservations of {scope}: {answer.get('error', status)}"
            )
        return bool(answer.get("changed"))

    def reservations(self, scope: str) -> list[Reservation]:
        status, answer = self._call("GET", "/reservations")
        if status != 200:
            raise ProvisioningError(f"the provisioning service at {self.url}: reading reservations: {status}")
        return [Reservation.from_json(r) for r in answer.get(scope, [])]
