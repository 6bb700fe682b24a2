"""Faults put between Atlas and a real service: a proxy in front of NetBox that passes every request
through until told to answer writes with 503, as a NetBox behind a failing load balancer does, or to
hang on every request, as a NetBox whose workers are all stuck does."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
READS_BY_POST = "/graphql/"  # NetBox's GraphQL API only queries


class NetBoxProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.failing_writes = False
        self.passing_writes: tuple[str, ...] = ()  # path prefixes written through while writes fail
        self.hanging = False
        self.released = threading.Event()
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if proxy.hanging:
                    proxy.refused.append(f"{self.command} {self.path}")
                    proxy.released.wait(timeout=300)
                    self.close_connection = True
                    return
                if (
                    proxy.failing_writes
                    and self.command in WRITES
                    and self.path != READS_BY_POST
                    and not self.path.startswith(proxy.passing_writes or ("\0",))
                ):
                    proxy.refused.append(f"{self.command} {self.path}")
                    self.send_error(503, "Service Unavailable")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, payload, reply_headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as e:
                    status, payload, reply_headers = e.code, e.read(), e.headers
                self.send_response(status)
                for key in ("Content-Type", "API-Version"):
                    if reply_headers.get(key):
                        self.send_header(key, reply_headers[key])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def netbox_proxy(upstream: str) -> Iterator[NetBoxProxy]:
    proxy = NetBoxProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.released.set()
        proxy.server.shutdown()
        proxy.server.server_close()
