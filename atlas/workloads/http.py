"""The HTTP calls a scheduler adapter makes, behind one small interface: requests in production, and
in unit tests a transport that answers as the scheduler's documentation says it does."""

from __future__ import annotations

from typing import Any, Protocol

import requests


class Transport(Protocol):
    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(HTTP status, the JSON body or None)."""


class RequestsTransport:
    def __init__(
        self, base_url: str, token: str | None = None, ca_file: str | None = None, timeout: float = 15
    ) -> None:
        self._base = base_url.rstrip("/")
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.verify = ca_file or True
        self._timeout = timeout

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        response = self._session.request(
            method, self._base + path, json=body, headers=headers, timeout=self._timeout
        )
        try:
            return response.status_code, response.json() if response.content else None
        except ValueError:
            return response.status_code, None
