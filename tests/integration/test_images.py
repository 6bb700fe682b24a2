"""The image catalog against the lab's moto (S3 and EC2), with its settings from the lab's OpenBao."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atlas.images.catalog import (
    SHA_TAG,
    VERSION_TAG,
    AwsSettings,
    Catalog,
    ImageConflict,
    ImageError,
    sha256_of,
)
from atlas.lab.images import build
from atlas.lab.lab import Lab
from atlas.secrets import AWS_PATH, Vault

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog(vault: Vault) -> Catalog:
    return Catalog(AwsSettings.from_secret(vault.read(AWS_PATH)))


def test_publish_registers_the_ami_in_one_region_and_copies_it_tagged_to_the_others(
    catalog: Catalog, tmp_path: Path
) -> None:
    artifact = build("it-1", tmp_path / "it-1.tar.gz")
    published = catalog.publish("it-1", artifact)
    regions = catalog.settings.regions
    assert len(regions) == 2 and sorted(published.manifest.amis) == sorted(regions)
    assert published.changes[0].startswith("artifact uploaded")
    assert any(c.startswith("AMI") and regions[1] in c for c in published.changes)
    for region, ami in published.manifest.amis.items():
        assert catalog.ami_tags(region, ami) == {VERSION_TAG: "it-1", SHA_TAG: sha256_of(artifact)}
    assert catalog.manifest("it-1") == published.manifest
    assert "it-1" in [m.version for m in catalog.versions()]


def test_publishing_the_same_content_again_changes_nothing_other_content_is_refused(
    catalog: Catalog, tmp_path: Path
) -> None:
    artifact = build("it-2", tmp_path / "it-2.tar.gz")
    first = catalog.publish("it-2", artifact)
    again = catalog.publish("it-2", build("it-2", tmp_path / "copy.tar.gz"))
    assert again.changes == [] and again.manifest == first.manifest
    with pytest.raises(ImageConflict, match="immutable"):
        catalog.publish("it-2", build("it-2", tmp_path / "other.tar.gz", broken=True))
    assert catalog.manifest("it-2") == first.manifest
    with pytest.raises(ImageError, match="not a version name"):
        catalog.publish("it 2; rm -rf /", artifact)


def test_an_artifact_changed_after_publishing_is_refused_as_corrupt(catalog: Catalog, tmp_path: Path) -> None:
    manifest = catalog.publish("it-3", build("it-3", tmp_path / "it-3.tar.gz"), amis=False).manifest
    good = catalog.fetch_verified("it-3", tmp_path / "fetched.tar.gz")
    assert good == manifest and sha256_of(tmp_path / "fetched.tar.gz") == manifest.sha256
    catalog._client("s3").put_object(
        Bucket=catalog.settings.bucket, Key=manifest.artifact_key, Body=b"bit rot"
    )
    with pytest.raises(ImageError, match="it-3 is corrupt"):
        catalog.fetch_verified("it-3", tmp_path / "bad.tar.gz")
    assert not (tmp_path / "bad.tar.gz").exists()
    with pytest.raises(ImageError, match="not in the catalog"):
        catalog.fetch_verified("never-published", tmp_path / "none.tar.gz")


def test_the_cli_publishes_lists_and_shows(lab: Lab, tmp_path: Path) -> None:
    def atlas(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "atlas.cli", *args], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout

    artifact = str(tmp_path / "a.tar.gz")
    where = ("--lab", lab.cfg.name)
    atlas("image", "build-lab", "it-cli", artifact)
    assert "artifact uploaded" in atlas("image", "publish", "it-cli", artifact, *where)
    assert "nothing changed" in atlas("image", "publish", "it-cli", artifact, *where)
    assert "it-cli" in atlas("image", "list", *where)
    assert '"version": "it-cli"' in atlas("image", "show", "it-cli", *where)
