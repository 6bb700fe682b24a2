"""Host images for the lab: a tarball holding the lab's workload and the image.json that the image
playbook reads (version, services, their health URLs)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

APP = Path(__file__).with_name("image") / "atlas-app"
APP_PORT = 8080
# A release whose service exits at once: what a bad build looks like to the rollout.
BROKEN_APP = "#!/bin/sh\necho 'atlas-app: cannot start: bad release' >&2\nexit 3\n"


def image_spec(version: str) -> dict[str, object]:
    return {
        "version": version,
        "services": [
            {
                "name": "atlas-app",
                "command": f"bin/atlas-app --port {APP_PORT}",
                "health_url": f"http://127.0.0.1:{APP_PORT}/health",
            }
        ],
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = (
        len(data),
        mode,
        0,
    )  # same content, same bytes: publish stays idempotent
    tar.addfile(info, io.BytesIO(data))


def build(version: str, dest: Path, broken: bool = False) -> Path:
    """Writes the image of `version` to `dest`; `broken` ships a service that never starts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "image.json", json.dumps(image_spec(version), indent=2).encode(), 0o644)
        _add(tar, "bin/atlas-app", BROKEN_APP.encode() if broken else APP.read_bytes(), 0o755)
    dest.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return dest
