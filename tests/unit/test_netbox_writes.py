"""What NetBox writes are made of, decided on the models a run read: only what differs is written,
and a field Atlas does not keep is refused before anything is."""

from __future__ import annotations

import pytest

from atlas.core.model import Device, DeviceStatus, Rack, RackStatus, Role
from atlas.sot.schema import COMPLIANCE_FIELD, IMAGE_VERSION_FIELD
from atlas.sot.write import NetBoxWriteError, custom_field_updates, set_rack_status


def device(name: str, netbox_id: int | None, **fields: object) -> Device:
    return Device(
        name=name,
        site="fra1",
        role=Role.COMPUTE,
        status=DeviceStatus.ACTIVE,
        device_type="srv",
        custom_fields=fields,
        netbox_id=netbox_id,
    )


def test_only_devices_whose_fields_differ_are_in_the_bulk_update() -> None:
    a = device("a", 1, **{IMAGE_VERSION_FIELD: "v1", COMPLIANCE_FIELD: "drift"})
    b = device("b", 2, **{IMAGE_VERSION_FIELD: "v2"})
    updates, changes = custom_field_updates(
        [(a, {IMAGE_VERSION_FIELD: "v2", COMPLIANCE_FIELD: "drift"}), (b, {IMAGE_VERSION_FIELD: "v2"})]
    )
    assert updates == [{"id": 1, "custom_fields": {IMAGE_VERSION_FIELD: "v2"}}]
    assert [(c.target, c.before, c.after) for c in changes] == [
        ("a", {IMAGE_VERSION_FIELD: "v1"}, {IMAGE_VERSION_FIELD: "v2"})
    ]


def test_a_field_atlas_does_not_keep_or_a_device_not_read_from_netbox_is_refused() -> None:
    with pytest.raises(NetBoxWriteError, match="not a custom field Atlas keeps on devices: colour"):
        custom_field_updates([(device("a", 1), {"colour": "blue"})])
    with pytest.raises(NetBoxWriteError, match="'a' was not read from NetBox"):
        custom_field_updates([(device("a", None), {IMAGE_VERSION_FIELD: "v1"})])


def test_a_rack_already_at_its_status_costs_no_call() -> None:
    active = Rack(name="fra1-r01", site="fra1", status=RackStatus.ACTIVE, netbox_id=7)
    change = set_rack_status(None, active, RackStatus.ACTIVE)  # no NetBox: none is asked
    assert not change.changed and change.target == "fra1-r01"
    with pytest.raises(NetBoxWriteError, match="was not read from NetBox"):
        set_rack_status(None, Rack(name="r9", site="fra1"), RackStatus.ACTIVE)
