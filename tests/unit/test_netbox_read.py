"""NetBox's GraphQL answers turned into models, and long lists read page by page: plain data, no server
(tests/integration/test_netbox.py reads a real NetBox)."""

from __future__ import annotations

from ipaddress import IPv4Interface
from typing import Any

import pytest

from atlas.core.model import DeviceStatus, Endpoint, InterfaceKind, Role
from atlas.sot import read


def interface(
    id: int, name: str, *addresses: tuple[str, str | None], mgmt: bool = False, kind: str = "1000base-t"
) -> dict[str, Any]:
    return {
        "id": str(id),
        "name": name,
        "mgmt_only": mgmt,
        "type": kind,
        "description": "",
        "enabled": True,
        "ip_addresses": [{"address": a, "role": role} for a, role in addresses],
    }


SERVER = {
    "id": "7",
    "name": "fra1-r01-sto1",
    "site": {"name": "fra1"},
    "rack": {"name": "fra1-r01"},
    "role": {"slug": "storage"},
    "platform": {"slug": "debian"},
    "status": "planned",
    "device_type": {"model": "atlas-storage-2"},
    "custom_field_data": {"image_version": "2026.11.1"},
    # NetBox's order is not the interfaces' order of creation
    "interfaces": [
        interface(148, "lo", ("198.19.16.8/32", None), ("198.19.19.254/32", "anycast"), kind="virtual"),
        interface(145, "eth0", ("198.18.16.9/22", None), mgmt=True),
        interface(146, "eth1", ("198.19.128.17/31", None)),
    ],
    "inventoryitems": [
        {"name": "disk2", "role": {"slug": "disk"}, "custom_field_data": {}},
        {"name": "disk1", "role": {"slug": "disk"}, "custom_field_data": {"device_path": "/dev/sdb"}},
        {"name": "psu1", "role": None, "custom_field_data": {}},
    ],
}


def test_a_device_with_its_interfaces_addresses_and_disks() -> None:
    d = read._device(SERVER, {})
    assert (d.name, d.site, d.rack, d.role, d.status, d.netbox_id) == (
        "fra1-r01-sto1",
        "fra1",
        "fra1-r01",
        Role.STORAGE,
        DeviceStatus.PLANNED,
        7,
    )
    assert [i.name for i in d.interfaces] == ["eth0", "eth1", "lo"]
    assert [i.kind for i in d.interfaces] == [
        InterfaceKind.MGMT,
        InterfaceKind.PHYSICAL,
        InterfaceKind.LOOPBACK,
    ]
    assert d.mgmt_address == IPv4Interface("198.18.16.9/22")
    # the anycast address is the service's, announced apart from the loopback
    assert d.loopback == IPv4Interface("198.19.16.8/32")
    assert d.anycast == (IPv4Interface("198.19.19.254/32"),)
    assert d.interface("lo").addresses == (IPv4Interface("198.19.16.8/32"),)  # type: ignore[union-attr]
    assert d.disks == ("disk1", "disk2") and d.disk_paths == {"disk1": "/dev/sdb"}
    assert d.custom_fields == {"image_version": "2026.11.1"}


def end(kind: str, device: str = "", name: str = "") -> dict[str, Any]:
    return {"__typename": kind, "device": {"name": device}, "name": name}


def test_only_cables_from_one_interface_to_one_interface_are_fabric() -> None:
    cables = read._cables(
        [
            {
                "id": "1",
                "status": "connected",
                "a_terminations": [end("InterfaceType", "s1", "swp1")],
                "b_terminations": [end("InterfaceType", "l1", "swp51")],
            },
            {
                "id": "2",
                "status": "planned",
                "a_terminations": [end("InterfaceType", "s1", "swp2")],
                "b_terminations": [end("FrontPortType")],
            },
            {
                "id": "3",
                "status": "connected",
                "a_terminations": [end("InterfaceType", "s1", "swp3")],
                "b_terminations": [end("InterfaceType", "l2", "swp1"), end("InterfaceType", "l2", "swp2")],
            },
        ]
    )
    assert [(c.a, c.b, c.status) for c in cables] == [
        (Endpoint(device="s1", interface="swp1"), Endpoint(device="l1", interface="swp51"), "connected")
    ]


def test_a_list_longer_than_a_page_is_read_to_its_end_and_the_others_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = {"device_list": [{"id": str(i)} for i in (1, 2, 3, 5, 8)], "rack_list": [{"id": "4"}]}
    asked: list[str] = []

    def answer(nb: object, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        asked.append(query)
        page = {}
        for name, found in rows.items():
            if f"{name}: {name}(" in query:
                start = int(query.split(f"{name}: {name}(")[1].split("start: ")[1].split(",")[0])
                page[name] = [r for r in found if int(r["id"]) >= start][: read._PAGE]
        return page

    monkeypatch.setattr(read, "_PAGE", 2)
    monkeypatch.setattr(read, "graphql", answer)
    found = read._read_lists(
        None,
        {
            "device_list": read._List("device_list", "{}", "id"),
            "rack_list": read._List("rack_list", "{}", "id"),
        },
        "$name: String!",
        {"name": "x"},
    )
    assert found == rows
    assert len(asked) == 3 and all("rack_list" not in q for q in asked[1:])
