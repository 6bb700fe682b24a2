"""After every other test of the session has run every flow in the lab: no credential value appears in
Prefect (logs, artifacts, parameters, run inputs), in NetBox (journal, changelog), in ansible-runner's
directories or in the lab's own files outside the places that hold them by design."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynetbox
import pytest

from atlas.lab.lab import Lab
from atlas.prefect.serve import PROJECT

pytestmark = pytest.mark.after_everything

# where a credential is kept on purpose: the lab's bootstrap file and shell env, its SSH key, the
# stores themselves (NetBox's and OpenBao's data, PostgreSQL), Ceph's keyrings, and the log of
# OpenBao's dev server, which prints its root token when it starts
HELD_BY_DESIGN = {"secrets.json", "lab.env", "keys", "netbox", "openbao", "ceph", "openbao.log"}


@pytest.fixture(scope="module")
def credentials(lab: Lab) -> dict[str, str]:
    secrets = lab.secrets
    private_key = (lab.cfg.dir / "keys" / "host_ed25519").read_text()
    return {
        "switch password": secrets.switch_password,
        "NetBox token": secrets.netbox_token_secret,
        "NetBox admin password": secrets.netbox_admin_password,
        "OpenBao token": secrets.openbao_root_token,
        "AWS secret key": secrets.aws_secret_key,
        "Prefect database password": secrets.prefect_db_password,
        # the key's private part: the start of every OpenSSH ed25519 key encodes the same header
        "host private key": "".join(private_key.splitlines()[1:-1])[-100:-30],
    }


def leaks(text: str, credentials: dict[str, str]) -> list[str]:
    return [name for name, value in credentials.items() if value in text]


def prefect_pages(lab: Lab, what: str) -> Iterator[list[dict[str, Any]]]:
    offset = 0
    while True:
        request = urllib.request.Request(
            f"{lab.cfg.prefect_url}/{what}/filter",
            data=json.dumps({"limit": 200, "offset": offset}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page: list[dict[str, Any]] = json.load(response)
        if not page:
            return
        yield page
        offset += len(page)


def test_prefect_holds_no_credential(lab: Lab, credentials: dict[str, str]) -> None:
    found: dict[str, int] = {}
    for what in ("logs", "artifacts", "flow_runs", "task_runs", "variables"):
        pages = list(prefect_pages(lab, what))
        found[what] = sum(len(p) for p in pages)
        for page in pages:
            assert leaks(json.dumps(page), credentials) == [], what
    assert found["logs"] > 1000 and found["artifacts"] > 20 and found["flow_runs"] > 20  # the flows ran
    for run in next(prefect_pages(lab, "flow_runs")):
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{lab.cfg.prefect_url}/flow_runs/{run['id']}/input/filter",
                data=b'{"prefix": ""}',
                headers={"content-type": "application/json"},
                method="POST",
            ),
            timeout=30,
        ) as response:
            assert leaks(response.read().decode(), credentials) == []


def test_netbox_holds_no_credential(nb: pynetbox.api, credentials: dict[str, str]) -> None:
    journal = [e.comments for e in nb.extras.journal_entries.all()]
    changes = [json.dumps(dict(c)) for c in nb.core.object_changes.all()]
    assert journal and changes
    for text in journal + changes:
        assert leaks(text, credentials) == []


def files_to_scan(lab: Lab) -> Iterator[Path]:
    for top in sorted(lab.cfg.dir.iterdir()):
        if top.name in HELD_BY_DESIGN:
            continue
        paths = [top] if top.is_file() else sorted(top.rglob("*"))
        yield from (p for p in paths if p.is_file() and not p.is_symlink() and p.name not in HELD_BY_DESIGN)
    yield from (p for p in (PROJECT / "test-artifacts").rglob("*") if p.is_file())


def data_of(path: Path) -> Iterator[bytes]:
    """A file's bytes, skipping the holes of a sparse one (the storage servers' 4 GiB disks hold MiBs)."""
    with path.open("rb") as f:
        fd, offset = f.fileno(), 0
        while True:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole after offset
                return
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            f.seek(start)
            yield f.read(offset - start)


def test_no_file_holds_a_credential(lab: Lab, credentials: dict[str, str]) -> None:
    assert list(Path("/tmp").glob("atlas-ansible-*")) == []  # ansible-runner's directories are gone
    hits, scanned = [], 0
    for path in files_to_scan(lab):
        try:
            text = "\n".join(extent.decode(errors="replace") for extent in data_of(path))
        except OSError:  # a socket or a file a running process just removed
            continue
        scanned += 1
        hits += [f"{path}: {name}" for name in leaks(text, credentials)]
    assert scanned > 100
    assert hits == []
