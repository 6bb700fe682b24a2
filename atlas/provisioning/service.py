"""The provisioning service: DHCP (Kea) and an HTTP endpoint serving the image catalog to servers that
boot from the network, on the provisioning network (`atlas provisioning serve`).

HTTP, on the address servers reach it at:
  GET  /images/<version>/image.tar.gz   the catalog's artifact, streamed from S3
  GET  /images/<version>/manifest.json  its manifest (sha256, size, SSH host key)
  GET  /health                          DHCP running or not, how many reservations
  GET  /reservations                    every reservation, by rack
  PUT  /reservations/<scope>            a rack's reservations (JSON list), replacing that rack's
A reservation set is checked whole (kea-dhcp4 -t) before Kea reloads it: a refused set names every
problem and the running DHCP keeps the last good one. Reservations persist in the state directory.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from atlas.images.catalog import ARTIFACT, MANIFEST, Catalog, ImageError
from atlas.provisioning.kea import DhcpError, KeaServer, Reservation

SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IMAGE_PATH = re.compile(
    r"^/images/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/(" + re.escape(ARTIFACT) + "|" + re.escape(MANIFEST) + ")$"
)


class Provisioning:
    """Kea and the reservations it serves, by scope (a rack)."""

    def __init__(self, interface: str, subnet: IPv4Network, state: Path, catalog: Catalog | None) -> None:
        self.kea = KeaServer(interface, subnet, state)
        self.catalog = catalog
        self.file = state / "reservations.json"
        self.lock = threading.Lock()
        state.mkdir(parents=True, exist_ok=True)

    def scopes(self) -> dict[str, list[Reservation]]:
        if not self.file.exists():
            return {}
        data = json.loads(self.file.read_text())
        return {k: [Reservation.from_json(r) for r in v] for k, v in data.items()}

    def start(self) -> None:
        with self.lock:
            self.kea.write(r for rs in self.scopes().values() for r in rs)
            self.kea.start()

    def put(self, scope: str, reservations: list[Reservation]) -> bool:
        """Replaces the scope's reservations; True when they changed (Kea reloaded)."""
        with self.lock:
            scopes = self.scopes()
            if sorted(scopes.get(scope, [])) == sorted(reservations):
                return False
            scopes[scope] = sorted(reservations)
            if not reservations:
                del scopes[scope]
            self.kea.write(r for rs in scopes.values() for r in rs)  # raises before anything is kept
            self.file.write_text(
                json.dumps({k: [r.to_json() for r in v] for k, v in sorted(scopes.items())}, indent=2) + "\n"
            )
            self.kea.reload()
            return True

    def health(self) -> dict[str, Any]:
        return {
            "dhcp": "running" if self.kea.running() else "stopped",
            "reservations": sum(len(v) for v in self.scopes().values()),
        }


def handler_for(p: Provisioning) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.client_address[0]} {format % args}\n")

        def _json(self, status: HTTPStatus, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                health = p.health()
                self._json(
                    HTTPStatus.OK if health["dhcp"] == "running" else HTTPStatus.SERVICE_UNAVAILABLE, health
                )
                return
            if self.path == "/reservations":
                self._json(HTTPStatus.OK, {k: [r.to_json() for r in v] for k, v in p.scopes().items()})
                return
            found = IMAGE_PATH.match(self.path)
            if found is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {self.path}"})
                return
            if p.catalog is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no image catalog configured"})
                return
            version, name = found.groups()
            try:
                manifest, body = p.catalog.open_artifact(version)
            except ImageError as e:
                self._json(HTTPStatus.NOT_FOUND, {"error": str(e)})
                return
            if name == MANIFEST:
                body.close()
                self._json(HTTPStatus.OK, manifest.model_dump(mode="json"))
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(manifest.size))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                shutil.copyfileobj(body, self.wfile, 1 << 20)
            finally:
                body.close()

        def do_PUT(self) -> None:
            scope = self.path.removeprefix("/reservations/")
            if not self.path.startswith("/reservations/") or not SCOPE.match(scope):
                self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing to put at {self.path}"})
                return
            try:
                raw = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"[]")
                reservations = [Reservation.from_json(r) for r in raw]
            except (ValueError, KeyError, TypeError) as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"not a list of reservations: {e}"})
                return
            try:
                changed = p.put(scope, reservations)
            except DhcpError as e:
                self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(e)})
                return
            self._json(HTTPStatus.OK, {"changed": changed, "reservations": len(reservations)})

    return Handler


def serve(listen: str, interface: str, subnet: IPv4Network, state: Path, catalog: Catalog | None) -> None:
    """Runs until SIGTERM: Kea as a child, the HTTP endpoint in this process."""
    host, _, port = listen.rpartition(":")
    p = Provisioning(interface, subnet, state, catalog)
    p.start()
    server = ThreadingHTTPServer((host, int(port)), handler_for(p))
    server.daemon_threads = True

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write(f"provisioning: DHCP on {interface} ({subnet}), images on http://{listen}\n")
    try:
        server.serve_forever()
    finally:
        p.kea.stop()
