"""Which servers a bring-up installs from the network (atlas.runbooks.provision.plan_installs), what
stops it before anything is powered, and the DHCP reservations it asks for (atlas.provisioning.kea):
plain data."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from atlas.bmc import Inventory, Power
from atlas.core.model import Device, Interface, InterfaceKind, Role
from atlas.images.catalog import Manifest
from atlas.provisioning import ProvisioningClient, Reservation
from atlas.provisioning.kea import check, config
from atlas.runbooks.provision import Discovery, install_problems, plan_installs, reservations

V1, V2 = "os-1", "os-2"
SUBNET = IPv4Network("198.18.4.0/22")


def server(name: str, image: str = V1, installed: str = "", mgmt: str | None = "198.18.4.20/22") -> Device:
    return Device(
        name=name,
        site="s1",
        rack="r1",
        role=Role.COMPUTE,
        device_type="t",
        mgmt_address=IPv4Interface(mgmt) if mgmt else None,
        interfaces=(
            Interface(name="eth0", kind=InterfaceKind.MGMT),
            Interface(name="eth1", kind=InterfaceKind.PHYSICAL),
        ),
        custom_fields={"os_image": image, "os_installed": installed},
    )


def found(**power: tuple[Power, str]) -> Discovery:
    return Discovery(
        inventories={
            name: Inventory(
                serial="S", power=p, nics={"eth0": f"02:00:00:00:00:{i:02x}"}, boot_progress=progress
            )
            for i, (name, (p, progress)) in enumerate(sorted(power.items()))
        }
    )


def manifest(version: str, key: str = "ssh-ed25519 AAAAkey") -> Manifest:
    return Manifest(version=version, sha256="0" * 64, size=1, published_at="now", ssh_host_key=key)


def test_new_servers_are_installed_and_the_rest_is_decided_by_what_they_run() -> None:
    servers = (
        server("new"),  # off, nothing installed by Atlas: a new server
        server("done", installed=V1),  # runs what NetBox names
        server("other", image=V2, installed=V1),  # has another image: left alone
        server("running"),  # on, never recorded: its host key tells
        server("halted"),  # on but stopped in its firmware (an earlier boot failed): nothing runs
        server("none", image=""),  # NetBox names no image: not part of the install at all
    )
    discovery = found(
        new=(Power.OFF, ""),
        done=(Power.ON, "OSRunning"),
        other=(Power.ON, "OSRunning"),
        running=(Power.ON, "OSRunning"),
        halted=(Power.ON, "network boot failed: no DHCP answer on eth0"),
        none=(Power.OFF, ""),
    )
    plan = plan_installs(servers, discovery, reimage=False)
    assert plan.install == {"new": V1, "halted": V1}
    assert plan.check == {"running": V1}
    assert plan.left == {
        "done": f"runs {V1}, as NetBox names",
        "other": f"has {V1}, NetBox names {V2}: left alone (the form did not say re-image)",
    }
    reimaged = plan_installs(servers, discovery, reimage=True)
    assert reimaged.install == {"new": V1, "other": V2, "running": V1, "halted": V1}
    assert reimaged.left == {"done": f"runs {V1}, as NetBox names"}


def test_every_reason_an_install_cannot_start_is_named() -> None:
    servers = (server("a", image="gone"), server("b", image="keyless"), server("c", mgmt=None))
    plan = plan_installs(
        servers, found(a=(Power.OFF, ""), b=(Power.OFF, ""), c=(Power.OFF, "")), reimage=False
    )
    problems = install_problems(
        servers, plan, {"gone": None, "keyless": manifest("keyless", key=""), V1: manifest(V1)}
    )
    assert problems == [
        "a: image gone, which NetBox names for it, is not in the image catalog",
        "b: image keyless records no SSH host key in its manifest: a server booted from it cannot be told "
        "from another (publish it with its host key)",
        "c: NetBox has no management address for it (its DHCP reservation)",
    ]


def test_a_reservation_per_server_to_install_from_its_first_nic() -> None:
    servers = (server("a"), server("b", installed=V1, mgmt="198.18.4.21/22"))
    discovery = found(a=(Power.OFF, ""), b=(Power.ON, "OSRunning"))
    plan = plan_installs(servers, discovery, reimage=False)
    client = ProvisioningClient("http://198.18.4.1:80")
    assert reservations(servers, plan, discovery, client) == [
        Reservation(
            mac="02:00:00:00:00:00",
            address=IPv4Address("198.18.4.20"),
            hostname="a",
            boot_url="http://198.18.4.1:80/images/os-1/image.tar.gz",
        )
    ]


def test_reservations_that_clash_or_do_not_fit_are_each_named() -> None:
    url = "http://198.18.4.1/images/os-1/image.tar.gz"
    wanted = [
        Reservation("02:00:00:00:00:01", IPv4Address("198.18.4.20"), "a", url),
        Reservation("02:00:00:00:00:01", IPv4Address("198.18.4.21"), "b", url),
        Reservation("02:00:00:00:00:03", IPv4Address("198.18.4.20"), "c", url),
        Reservation("02:00:00:00:00:04", IPv4Address("10.0.0.1"), "d", "http://x/" + "y" * 130),
    ]
    assert check(SUBNET, wanted) == [
        "MAC 02:00:00:00:00:01 is reserved for both a and b",
        "address 198.18.4.20 is reserved for both a and c",
        "d: address 10.0.0.1 is outside the provisioning subnet 198.18.4.0/22",
        f"d: image URL longer than 127 bytes: http://x/{'y' * 130}",
    ]


def test_kea_serves_reservations_only_with_the_image_location() -> None:
    r = Reservation(
        "02:00:00:00:00:01", IPv4Address("198.18.4.20"), "a", "http://198.18.4.1/images/os-1/image.tar.gz"
    )
    conf = config("br0", SUBNET, [r], Path("/state"))["Dhcp4"]
    assert conf["interfaces-config"]["interfaces"] == ["br0"]
    (subnet,) = conf["subnet4"]
    assert "pools" not in subnet  # an unknown MAC gets no address
    assert subnet["reservations"] == [
        {
            "hw-address": "02:00:00:00:00:01",
            "ip-address": "198.18.4.20",
            "hostname": "a",
            "boot-file-name": "http://198.18.4.1/images/os-1/image.tar.gz",
            "option-data": [{"name": "host-name", "data": "a", "always-send": True}],
        }
    ]
