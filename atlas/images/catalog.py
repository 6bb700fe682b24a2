"""The image catalog: host images as S3 artifacts with sha256 manifests, and AMIs across EC2 regions.

Layout in the bucket, one prefix per version:
  images/<version>/image.tar.gz     the artifact
  images/<version>/manifest.json    version, sha256, size, the AMI of each region

The manifest is written last, so a version exists only once its artifact is complete. A version is
immutable: publishing it again with the same content only completes what is missing (an AMI in a new
region), with other content it is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from atlas.core.errors import Failed
from atlas.core.model import Frozen
from atlas.core.run import poll_until

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ARTIFACT = "image.tar.gz"
MANIFEST = "manifest.json"
VERSION_TAG = "atlas:image-version"
SHA_TAG = "atlas:sha256"
_CHUNK = 1 << 20


class ImageError(Failed):
    pass


class ImageConflict(ImageError):
    """The version exists with other content: versions are immutable."""


@dataclass(frozen=True)
class AwsSettings:
    """Where images live: from Vault (secret atlas/aws), never from a deployment's parameters."""

    bucket: str
    regions: tuple[str, ...]  # the first is where AMIs are registered; the others get copies
    access_key_id: str
    secret_access_key: str = field(repr=False)
    endpoint_url: str | None = None  # None: AWS itself
    snapshot_source: str = "import"  # how an AMI's disk is made: "import" (EC2) or "empty-volume" (moto)

    @classmethod
    def from_secret(cls, data: dict[str, Any]) -> AwsSettings:
        missing = [k for k in ("bucket", "regions", "access_key_id", "secret_access_key") if not data.get(k)]
        if missing:
            raise ImageError(f"the AWS secret lacks {', '.join(missing)}")
        return cls(
            bucket=str(data["bucket"]),
            regions=tuple(r.strip() for r in str(data["regions"]).split(",") if r.strip()),
            access_key_id=str(data["access_key_id"]),
            secret_access_key=str(data["secret_access_key"]),
            endpoint_url=str(data["endpoint_url"]) if data.get("endpoint_url") else None,
            snapshot_source=str(data.get("snapshot_source") or "import"),
        )


class Manifest(Frozen):
    version: str = Field(pattern=VERSION_PATTERN)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int
    published_at: str
    amis: dict[str, str] = Field(default_factory=dict)
    # The SSH host key the image was built with (an OpenSSH public key line), for images a server
    # network-boots: the server that answers SSH with it runs this image. Empty for other images.
    ssh_host_key: str = ""

    @property
    def artifact_key(self) -> str:
        return f"images/{self.version}/{ARTIFACT}"


@dataclass
class Published:
    manifest: Manifest
    changes: list[str]  # empty: the version was already complete


class SnapshotSource(Protocol):
    """Where the root-disk snapshot of an AMI comes from (EC2 turns the S3 artifact into one)."""

    def snapshot(self, ec2: Any, manifest: Manifest, bucket: str) -> str: ...


class ImportSnapshot:
    """EC2 imports the artifact from S3 (import-snapshot). moto does not implement this call."""

    def __init__(self, timeout_s: float = 3600, poll_s: float = 15) -> None:
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def snapshot(self, ec2: Any, manifest: Manifest, bucket: str) -> str:
        task = ec2.import_snapshot(
            Description=f"atlas image {manifest.version}",
            DiskContainer={
                "Format": "raw",
                "UserBucket": {"S3Bucket": bucket, "S3Key": manifest.artifact_key},
            },
        )["ImportTaskId"]

        def status() -> dict[str, Any]:
            tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task])["ImportSnapshotTasks"]
            return dict(tasks[0]["SnapshotTaskDetail"])

        ended = ("completed", "deleted", "deleting")
        found = poll_until(status, lambda s: s.get("Status") in ended, self.timeout_s, pause=self.poll_s)
        if found.get("Status") == "completed":
            return str(found["SnapshotId"])
        if found.get("Status") in ended:
            raise ImageError(f"import of {manifest.version} failed: {found.get('StatusMessage', '')}")
        raise ImageError(f"import of {manifest.version} did not finish in {self.timeout_s:.0f} s")


class EmptyVolumeSnapshot:
    """A snapshot of an empty volume: the lab's stand-in, because moto cannot import disks."""

    def snapshot(self, ec2: Any, manifest: Manifest, bucket: str) -> str:
        zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        volume = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
        return str(
            ec2.create_snapshot(VolumeId=volume, Description=f"atlas image {manifest.version}")["SnapshotId"]
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tags(manifest: Manifest) -> list[dict[str, str]]:
    return [{"Key": VERSION_TAG, "Value": manifest.version}, {"Key": SHA_TAG, "Value": manifest.sha256}]


class Catalog:
    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        sources: dict[str, SnapshotSource] = {
            "import": ImportSnapshot(),
            "empty-volume": EmptyVolumeSnapshot(),
        }
        if settings.snapshot_source not in sources:
            raise ImageError(
                f"unknown snapshot source {settings.snapshot_source!r}: one of {', '.join(sources)}"
            )
        self.snapshots = sources[settings.snapshot_source]

    def _client(self, service: str, region: str | None = None) -> Any:
        return boto3.client(
            service,
            region_name=region or self.settings.regions[0],
            endpoint_url=self.settings.endpoint_url,
            aws_access_key_id=self.settings.access_key_id,
            aws_secret_access_key=self.settings.secret_access_key,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )

    # --- reading ------------------------------------------------------------------------------
    def manifest(self, version: str) -> Manifest | None:
        try:
            body = self._client("s3").get_object(
                Bucket=self.settings.bucket, Key=f"images/{version}/{MANIFEST}"
            )
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise ImageError(f"reading the manifest of {version}: {e}") from None
        return Manifest.model_validate_json(body["Body"].read())

    def versions(self) -> list[Manifest]:
        s3 = self._client("s3")
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix="images/", Delimiter="/"
            )
            names = [p["Prefix"].split("/")[1] for page in pages for p in page.get("CommonPrefixes", [])]
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchBucket":
                return []
            raise ImageError(f"listing images: {e}") from None
        found = [self.manifest(n) for n in names]
        return sorted((m for m in found if m is not None), key=lambda m: m.published_at)

    def fetch_verified(self, version: str, dest: Path) -> Manifest:
        """Downloads the artifact to `dest` and checks it against its manifest; a missing version or
        an artifact whose content is not what was published raises ImageError."""
        manifest = self.manifest(version)
        if manifest is None:
            raise ImageError(f"image {version} is not in the catalog")
        try:
            self._client("s3").download_file(self.settings.bucket, manifest.artifact_key, str(dest))
        except (ClientError, BotoCoreError) as e:
            raise ImageError(f"downloading image {version}: {e}") from None
        found = sha256_of(dest)
        if found != manifest.sha256:
            dest.unlink(missing_ok=True)
            raise ImageError(
                f"image {version} is corrupt: its artifact has sha256 {found}, its manifest says {manifest.sha256}"
            )
        return manifest

    def open_artifact(self, version: str) -> tuple[Manifest, Any]:
        """The manifest and a stream of the artifact's bytes (for serving it: the reader checks it
        against the manifest's sha256); ImageError when the version is not in the catalog."""
        manifest = self.manifest(version)
        if manifest is None:
            raise ImageError(f"image {version} is not in the catalog")
        try:
            body = self._client("s3").get_object(Bucket=self.settings.bucket, Key=manifest.artifact_key)
        except (ClientError, BotoCoreError) as e:
            raise ImageError(f"reading image {version}: {e}") from None
        return manifest, body["Body"]

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, version: str, artifact: Path, amis: bool = True, ssh_host_key: str = "") -> Published:
        if not re.match(VERSION_PATTERN, version):
            raise ImageError(f"{version!r} is not a version name (letters, digits, '.', '_', '-')")
        digest = sha256_of(artifact)
        existing = self.manifest(version)
        changes: list[str] = []
        if existing is not None and existing.sha256 != digest:
            raise ImageConflict(
                f"image {version} exists with sha256 {existing.sha256}; {artifact} has {digest}. "
                "Versions are immutable: publish this content under a new version"
            )
        manifest = existing or Manifest(
            version=version,
            sha256=digest,
            size=artifact.stat().st_size,
            published_at=datetime.now(UTC).isoformat(),
            ssh_host_key=ssh_host_key.strip(),
        )
        if existing is None:
            self._upload(manifest, artifact)
            changes.append(f"artifact uploaded to s3://{self.settings.bucket}/{manifest.artifact_key}")
        if amis:
            manifest, made = self._amis(manifest)
            changes += made
        if changes:
            self._write_manifest(manifest)
        return Published(manifest, changes)

    def _upload(self, manifest: Manifest, artifact: Path) -> None:
        s3 = self._client("s3")
        try:
            s3.head_bucket(Bucket=self.settings.bucket)
        except ClientError:
            region = self.settings.regions[0]
            where = (
                {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            s3.create_bucket(Bucket=self.settings.bucket, **where)
        s3.upload_file(
            str(artifact),
            self.settings.bucket,
            manifest.artifact_key,
            ExtraArgs={"Metadata": {"sha256": manifest.sha256, "version": manifest.version}},
        )

    def _write_manifest(self, manifest: Manifest) -> None:
        self._client("s3").put_object(
            Bucket=self.settings.bucket,
            Key=f"images/{manifest.version}/{MANIFEST}",
            Body=manifest.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )

    def _find_ami(self, ec2: Any, manifest: Manifest) -> str | None:
        images = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": f"tag:{VERSION_TAG}", "Values": [manifest.version]}]
        )["Images"]
        return str(images[0]["ImageId"]) if images else None

    def _amis(self, manifest: Manifest) -> tuple[Manifest, list[str]]:
        """Registers the AMI in the first region and copies it to the others; tags are set on each
        image afterwards, since neither register-image nor copy-image carries them everywhere."""
        home, *others = self.settings.regions
        amis = dict(manifest.amis)
        changes = []
        ec2 = self._client("ec2", home)
        source = self._find_ami(ec2, manifest)
        if source is None:
            snapshot = self.snapshots.snapshot(ec2, manifest, self.settings.bucket)
            source = str(
                ec2.register_image(
                    Name=f"atlas-{manifest.version}",
                    Description=f"atlas image {manifest.version} sha256={manifest.sha256}",
                    Architecture="x86_64",
                    RootDeviceName="/dev/xvda",
                    VirtualizationType="hvm",
                    BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot}}],
                )["ImageId"]
            )
            ec2.create_tags(Resources=[source], Tags=_tags(manifest))
            changes.append(f"AMI {source} registered in {home}")
        amis[home] = source
        for region in others:
            regional = self._client("ec2", region)
            copy = self._find_ami(regional, manifest)
            if copy is None:
                copy = str(
                    regional.copy_image(
                        SourceImageId=source,
                        SourceRegion=home,
                        Name=f"atlas-{manifest.version}",
                        Description=f"atlas image {manifest.version} sha256={manifest.sha256}",
                    )["ImageId"]
                )
                regional.get_waiter("image_available").wait(ImageIds=[copy])
                regional.create_tags(Resources=[copy], Tags=_tags(manifest))
                changes.append(f"AMI {copy} copied to {region}")
            amis[region] = copy
        if amis != manifest.amis and not changes:
            changes.append("AMIs recorded in the manifest")
        return manifest.model_copy(update={"amis": amis}), changes

    def ami_tags(self, region: str, ami: str) -> dict[str, str]:
        image = self._client("ec2", region).describe_images(ImageIds=[ami])["Images"][0]
        return {t["Key"]: t["Value"] for t in image.get("Tags", [])}
