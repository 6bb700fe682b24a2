"""Planning an import against a NetBox snapshot given as plain data."""

from atlas.core.model import Endpoint
from atlas.lab.config import DEFAULT_TOPOLOGY
from atlas.sot.loader import DeviceFacts, Inventory, plan_load
from atlas.sot.topology import Topology, load_topology


def inventory_holding(topo: Topology) -> Inventory:
    """What NetBox holds after a complete import of `topo`."""
    inv = Inventory()
    inv.manufacturers = {dt.manufacturer for dt in topo.device_types}
    inv.device_types = {dt.name: set(dt.interface_names()) for dt in topo.device_types}
    inv.device_type_disks = {dt.name: set(dt.disk_names()) for dt in topo.device_types}
    devices = topo.all_devices()
    inv.roles = {d.role.value for d in devices}
    inv.platforms = {d.platform for d in devices if d.platform}
    prefixes = [*topo.global_prefixes, *(p for s in topo.sites for p in s.prefixes)]
    inv.ipam_roles = {p.role for p in prefixes}
    inv.prefixes = {str(p.prefix) for p in prefixes}
    inv.sites = {s.name for s in topo.sites}
    inv.racks = {r.name: s.name for s in topo.sites for r in s.racks}
    for d in devices:
        inv.devices[d.name] = DeviceFacts(
            site=d.site, rack=d.rack, role=d.role.value, device_type=d.device_type
        )
        for i in d.interfaces:
            for a in i.addresses:
                inv.addresses[str(a.ip)] = Endpoint(device=d.name, interface=i.name)
        inv.anycast |= {(str(a.ip), Endpoint(device=d.name, interface="lo")) for a in d.anycast}
    for c in topo.all_cables():
        inv.cables[c.a], inv.cables[c.b] = c.b, c.a
    return inv


def test_an_empty_netbox_gets_everything_once() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    plan = plan_load(topo, Inventory())
    assert plan.conflicts == []
    counts = plan.counts()
    assert counts["devices"] == len(topo.all_devices()) == 26
    assert counts["cables"] == len(topo.all_cables()) == 45
    assert counts["sites"] == 3
    assert counts["racks"] == 4
    assert counts["primary_ips"] == 26
    assert len({addr for addr, _ in plan.addresses}) == counts["addresses"]
    # one service address, announced by each compute server of both sites
    assert {addr for addr, _ in plan.anycast} == {"198.19.3.254/32"} and counts["anycast"] == 8


def test_an_anycast_address_held_as_a_unicast_address_is_a_conflict() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    inv = inventory_holding(topo)
    inv.anycast = set()
    inv.addresses["198.19.3.254"] = Endpoint(device="fra1-r01-cmp1", interface="lo")
    plan = plan_load(topo, inv)
    assert len(plan.conflicts) == 8
    assert (
        "anycast address 198.19.3.254 of ams1-r01-cmp1 is in NetBox as a unicast address" in plan.conflicts[0]
    )


def test_a_second_import_plans_nothing() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    plan = plan_load(topo, inventory_holding(topo))
    assert plan.empty, plan.counts()
    assert plan.conflicts == []


def test_a_partial_netbox_gets_only_what_is_missing() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    inv = inventory_holding(topo)
    del inv.devices["fra1-r02-cmp1"]
    inv.cables = {k: v for k, v in inv.cables.items() if "fra1-r02-cmp1" not in (k.device, v.device)}
    plan = plan_load(topo, inv)
    assert [d["name"] for d in plan.devices] == ["fra1-r02-cmp1"]
    assert {a.device for pair in plan.cables for a in pair} == {
        "fra1-r02-cmp1",
        "fra1-r02-leaf1",
        "fra1-r02-leaf2",
    }
    assert plan.primary_ips == [("fra1-r02-cmp1", "198.18.0.12/22")]
    assert plan.conflicts == []


def test_conflicts_with_what_netbox_holds_are_all_named() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    inv = inventory_holding(topo)
    inv.devices["fra1-r01-leaf1"] = DeviceFacts(
        site="fra1", rack="fra1-r02", role="leaf", device_type="atlas-switch-32"
    )
    inv.addresses["198.18.0.7"] = Endpoint(device="ams1-spine1", interface="eth0")
    leaf_port = Endpoint(device="fra1-r01-leaf1", interface="swp3")
    stray = Endpoint(device="fra1-r02-leaf1", interface="swp9")
    old_peer = inv.cables[leaf_port]
    inv.cables[leaf_port], inv.cables[stray] = stray, leaf_port
    del inv.cables[old_peer]
    inv.racks["ams1-r01"] = "fra1"
    plan = plan_load(topo, inv)
    text = "\n".join(plan.conflicts)
    assert "device fra1-r01-leaf1 differs in NetBox" in text
    assert "address 198.18.0.7 is assigned to ams1-spine1:eth0 in NetBox" in text
    assert "fra1-r01-leaf1:swp3 is cabled to fra1-r02-leaf1:swp9 in NetBox" in text
    assert "rack ams1-r01 is in site fra1 in NetBox, not ams1" in text
    assert len(plan.conflicts) == 4
