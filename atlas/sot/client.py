"""A pynetbox session with timeouts, so a hung NetBox fails a flow instead of stalling it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pynetbox
import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError

from atlas.core.errors import Failed

TRIES = 3  # idempotent requests only: urllib3 never repeats a write that may have landed


class NetBoxUnreachable(requests.exceptions.ConnectionError):
    """NetBox did not answer: down, or hung past the timeout on every try. A ConnectionError still,
    so every handler of requests' errors handles it; the message says which request and how long."""


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=TRIES - 1)
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
        limit = timeout or self._timeout
        try:
            return super().send(request, stream, limit, verify, cert, proxies)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            url = urlsplit(request.url or "")
            cause = e.args[0].reason if e.args and isinstance(e.args[0], MaxRetryError) else e
            raise NetBoxUnreachable(
                f"NetBox at {url.scheme}://{url.netloc} did not answer {request.method} {url.path} "
                f"(each try limited to {limit} s; NETBOX_TIMEOUT): {type(cause).__name__}",
                request=request,
            ) from e


def connect(url: str, token: str, timeout: float = 60.0) -> pynetbox.api:
    nb = pynetbox.api(url, token=token)
    session = requests.Session()
    adapter = _TimeoutAdapter(timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    nb.http_session = session
    return nb


class NetBoxQueryError(Failed):
    """NetBox refused a GraphQL query: a NetBox whose schema is not the one Atlas was written for."""


def graphql(nb: pynetbox.api, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """One GraphQL query over the session pynetbox uses (same token, timeouts and tries)."""
    scheme = "Bearer" if str(nb.token).startswith("nbt_") else "Token"  # NetBox 4.5's v2 tokens
    response = nb.http_session.post(
        nb.base_url.removesuffix("/api") + "/graphql/",
        json={"query": query, "variables": dict(variables)},
        headers={"Authorization": f"{scheme} {nb.token}", "Accept": "application/json"},
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise NetBoxQueryError("NetBox refused a query: " + "; ".join(e["message"] for e in body["errors"]))
    data: dict[str, Any] = body["data"]
    return data


def slugify(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
