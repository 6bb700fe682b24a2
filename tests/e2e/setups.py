"""Lab states that several end-to-end modules start from, reached idempotently: after a module that
left the lab there, they only check."""

from __future__ import annotations

from pathlib import Path

import pynetbox

from atlas.images.catalog import AwsSettings, Catalog
from atlas.lab.images import build
from atlas.secrets import AWS_PATH, Vault
from atlas.sot.read import read_site
from flows.fabric import fabric_apply
from flows.image_rollout import image_rollout
from flows.rack_bringup import rack_bringup

SERVING_RACKS = (("fra1", "fra1-r01"), ("ams1", "ams1-r01"))


def serving(vault: Vault, nb: pynetbox.api, scratch: Path) -> None:
    """fra1-r01 and ams1-r01 up with image v1 on every server, the core routing between them: the
    anycast service answers the client from both sites."""
    for site, rack in SERVING_RACKS:
        assert rack_bringup(site=site, rack=rack, dry_run=False).failed == 0
    assert not any(r.failed for r in fabric_apply(site="core", dry_run=False))
    catalog = Catalog(AwsSettings.from_secret(vault.read(AWS_PATH)))
    if catalog.manifest("v1") is None:
        catalog.publish("v1", build("v1", scratch / "v1.tar.gz"), amis=False)
    for site, rack in SERVING_RACKS:
        hosts = [d for d in read_site(nb, site).devices if d.rack == rack and d.role.is_server]
        if any(not d.custom_fields.get("image_version") for d in hosts):
            image_rollout(version="v1", site=site, rack=rack, wave_size=3, dry_run=False)
