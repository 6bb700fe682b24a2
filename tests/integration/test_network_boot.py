"""A lab server with a blank disk boots from the network as a real one does: its BMC (Redfish, through
sushy) is told to boot once from the network, its first NIC asks Atlas's provisioning service (Kea)
for an address and an image, fetches the image from the service (the image catalog in S3), checks its
sha256 and boots it. Each failure halts the server with the cause in its BMC's boot progress and
leaves no half-written disk."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from atlas.bmc import Bmc, BmcLogin, BootSource, Power, connect
from atlas.core.model import Device, Site
from atlas.core.run import poll_until
from atlas.images.catalog import ARTIFACT
from atlas.lab import procs
from atlas.lab.firmware import BLANK, INSTALLED
from atlas.lab.images import OS_IMAGE_VERSION
from atlas.lab.lab import Lab
from atlas.provisioning import ProvisioningClient, Reservation
from atlas.runbooks.provision import host_key
from atlas.secrets import PROVISIONING_PATH, Vault

SERVER = "fra1-r02-cmp1"
CORRUPT = "os-corrupt-1"


@pytest.fixture(scope="module")
def server(sites: list[Site]) -> Device:
    return next(d for s in sites for d in s.devices if d.name == SERVER)


@pytest.fixture(scope="module")
def bmc(lab: Lab, server: Device) -> Bmc:
    assert server.oob_address is not None
    return connect(
        "redfish",
        BmcLogin(server.oob_address.ip, "admin", lab.secrets.bmc_password, scheme="http", timeout=5),
    )


@pytest.fixture(scope="module")
def provisioning(vault: Vault) -> ProvisioningClient:
    return ProvisioningClient(vault.read(PROVISIONING_PATH)["url"])


@pytest.fixture(scope="module", autouse=True)
def blank(lab: Lab, provisioning: ProvisioningClient) -> Iterator[None]:
    lab.wipe(SERVER)
    yield
    provisioning.put("test-network-boot", [])


def reserve(lab: Lab, server: Device, client: ProvisioningClient, version: str | None) -> None:
    assert server.mgmt_address is not None
    wanted = (
        [
            Reservation(
                mac=lab.fabric.hardware(SERVER).macs["eth0"],
                address=server.mgmt_address.ip,
                hostname=SERVER,
                boot_url=client.image_url(version),
            )
        ]
        if version
        else []
    )
    client.put("test-network-boot", wanted)


def halted(bmc: Bmc) -> str:
    """The BMC's word once the boot stopped or the OS runs."""

    def progress() -> str:
        return bmc.inventory().boot_progress

    return poll_until(
        progress, lambda p: "failed" in p or "no bootable" in p or p == "OSRunning", timeout=120
    )


def still_blank(lab: Lab) -> bool:
    node = lab.fabric.node_dir(SERVER)
    disk = lab.fabric.machine(SERVER).upper
    written = [p for p in disk.rglob("*") if p.is_file()] if disk.exists() else []
    return (node / BLANK).exists() and not (node / INSTALLED).exists() and not written


def off(bmc: Bmc) -> None:
    bmc.power_off()
    assert bmc.inventory().power == Power.OFF


def test_the_provisioning_service_runs_its_dhcp(provisioning: ProvisioningClient) -> None:
    assert provisioning.problems() == []


def test_a_blank_disk_does_not_boot_from_itself(lab: Lab, bmc: Bmc) -> None:
    bmc.power_on(BootSource.DISK)
    assert halted(bmc) == "no bootable device: the disk holds no operating system"
    assert bmc.inventory().power == Power.ON  # on, stopped in its firmware, as a real server
    assert lab.fabric.machine(SERVER).pid() is None and still_blank(lab)
    off(bmc)


def test_without_a_dhcp_reservation_the_network_boot_stops_and_says_so(
    lab: Lab, server: Device, bmc: Bmc, provisioning: ProvisioningClient
) -> None:
    reserve(lab, server, provisioning, None)
    bmc.power_on(BootSource.HTTP)
    mac = lab.fabric.hardware(SERVER).macs["eth0"]
    assert halted(bmc) == f"network boot failed: no DHCP answer on eth0 ({mac}) after 3 tries"
    assert lab.fabric.machine(SERVER).pid() is None and still_blank(lab)
    off(bmc)


def test_a_corrupt_image_is_refused_and_nothing_is_written(
    lab: Lab, server: Device, bmc: Bmc, provisioning: ProvisioningClient
) -> None:
    catalog = lab.catalog()
    good = catalog.manifest(OS_IMAGE_VERSION)
    assert good is not None
    if catalog.manifest(CORRUPT) is None:
        source = lab.cfg.dir / "corrupt.tar.gz"
        _, body = catalog.open_artifact(OS_IMAGE_VERSION)
        source.write_bytes(body.read())
        catalog.publish(CORRUPT, source, amis=False, ssh_host_key=good.ssh_host_key)
        source.unlink()
    data = bytearray(catalog.open_artifact(CORRUPT)[1].read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in S3, the manifest unchanged
    catalog._client("s3").put_object(
        Bucket=catalog.settings.bucket, Key=f"images/{CORRUPT}/{ARTIFACT}", Body=bytes(data)
    )
    reserve(lab, server, provisioning, CORRUPT)
    bmc.power_on(BootSource.HTTP)
    said = halted(bmc)
    assert said.startswith(
        f"network boot failed: image {provisioning.image_url(CORRUPT)} is corrupt: sha256 "
    )
    assert f"its manifest says {good.sha256}" in said
    assert lab.fabric.machine(SERVER).pid() is None and still_blank(lab)
    off(bmc)


def test_the_named_image_is_installed_from_the_network_and_then_boots_from_the_disk(
    lab: Lab, server: Device, bmc: Bmc, provisioning: ProvisioningClient
) -> None:
    assert server.mgmt_address is not None
    manifest = lab.catalog().manifest(OS_IMAGE_VERSION)
    assert manifest is not None and manifest.ssh_host_key
    reserve(lab, server, provisioning, OS_IMAGE_VERSION)
    bmc.power_on(BootSource.HTTP)
    assert halted(bmc) == "OSRunning"
    address = str(server.mgmt_address.ip)
    key = poll_until(lambda: host_key(address), lambda k: k is not None, timeout=120)
    assert key is not None and key.split()[:2] == manifest.ssh_host_key.split()[:2]
    machine = lab.fabric.machine(SERVER)
    inside = procs.run(
        [*machine.enter(), "sh", "-c", "hostname; cat /etc/atlas-image.json; ip -br -4 addr show eth0"],
        "read",
    ).stdout
    assert SERVER in inside and OS_IMAGE_VERSION in inside and str(server.mgmt_address) in inside
    # afterwards the server boots from its disk: a power cycle without any override comes back as it was
    first = machine.pid()
    off(bmc)
    bmc.power_on()
    assert halted(bmc) == "OSRunning" and machine.pid() not in (None, first)
    time.sleep(1)
    again = poll_until(lambda: host_key(address), lambda k: k is not None, timeout=120)
    assert again == key
