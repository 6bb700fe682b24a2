"""A pynetbox session with timeouts, so a hung NetBox fails a flow instead of stalling it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pynetbox
import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=2)
        self._timeout = timeout

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        return super().send(request, stream, timeout or self._timeout, verify, cert, proxies)


def connect(url: str, token: str, timeout: float = 60.0) -> pynetbox.api:
    nb = pynetbox.api(url, token=token)
    session = requests.Session()
    adapter = _TimeoutAdapter(timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    nb.http_session = session
    return nb


def slugify(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
