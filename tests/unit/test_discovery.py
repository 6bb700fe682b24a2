"""Discovery's checks of what BMCs report against NetBox (atlas.runbooks.provision.check_discovery):
plain data, no BMC."""

from __future__ import annotations

from ipaddress import IPv4Interface

from atlas.bmc import Inventory, Power
from atlas.core.model import Device, Interface, InterfaceKind, Role
from atlas.core.run import Readings, Results
from atlas.runbooks.provision import Discovery, bmc_problems, check_discovery, discover_results

MACS = {
    "r1-cmp1": {"eth0": "02:00:00:00:01:00", "eth1": "02:00:00:00:01:01"},
    "r1-cmp2": {"eth0": "02:00:00:00:02:00", "eth1": "02:00:00:00:02:01"},
}


def server(name: str, serial: str, macs: dict[str, str | None], oob: str | None = "198.18.32.9/22") -> Device:
    nics = [
        Interface(name=n, kind=InterfaceKind.MGMT if n == "eth0" else InterfaceKind.PHYSICAL, mac=m)
        for n, m in macs.items()
    ]
    bmc = [Interface(name="bmc", kind=InterfaceKind.OOB, addresses=(IPv4Interface(oob),))] if oob else []
    return Device(
        name=name,
        site="s1",
        rack="r1",
        role=Role.COMPUTE,
        device_type="t",
        serial=serial,
        interfaces=(*nics, *bmc),
    )


def reported(serial: str, nics: dict[str, str], power: Power = Power.ON) -> Inventory:
    return Inventory(serial=serial, power=power, nics=nics)


def new_servers() -> tuple[Device, ...]:
    """Two servers NetBox knows by serial, with no MACs yet."""
    return (
        server("r1-cmp1", "SN1", dict.fromkeys(MACS["r1-cmp1"])),
        server("r1-cmp2", "SN2", dict.fromkeys(MACS["r1-cmp2"])),
    )


def check(
    servers: tuple[Device, ...], inventories: dict[str, Inventory], errors: dict[str, str] | None = None
) -> Discovery:
    return check_discovery(servers, servers, Readings(values=inventories, errors=errors or {}))


def test_a_brand_new_servers_macs_are_learnt_when_everything_else_matches() -> None:
    found = check(
        new_servers(),
        {"r1-cmp1": reported("SN1", MACS["r1-cmp1"]), "r1-cmp2": reported("SN2", MACS["r1-cmp2"])},
    )
    assert found.problems == []
    assert found.learnt == MACS


def test_a_server_in_another_servers_slot_is_named_with_both_names() -> None:
    found = check(
        new_servers(),
        {"r1-cmp1": reported("SN2", MACS["r1-cmp1"]), "r1-cmp2": reported("SN1", MACS["r1-cmp2"])},
    )
    assert any("r1-cmp1" in p and "'SN2'" in p and "records for r1-cmp2" in p for p in found.problems), (
        found.problems
    )
    assert any("r1-cmp2" in p and "'SN1'" in p and "records for r1-cmp1" in p for p in found.problems), (
        found.problems
    )
    assert found.learnt == {}  # nothing is recorded while anything differs


def test_a_serial_netbox_does_not_know_and_a_missing_serial_are_named() -> None:
    servers = (
        server("r1-cmp1", "SN1", dict.fromkeys(MACS["r1-cmp1"])),
        server("r1-cmp2", "", dict.fromkeys(MACS["r1-cmp2"])),
    )
    found = check(
        servers, {"r1-cmp1": reported("ZZZ", MACS["r1-cmp1"]), "r1-cmp2": reported("SN2", MACS["r1-cmp2"])}
    )
    assert found.problems == [
        "r1-cmp1: its BMC reports serial 'ZZZ', which NetBox does not know (NetBox records 'SN1' for r1-cmp1)",
        "r1-cmp2: NetBox records no serial for it; its BMC reports 'SN2' (record the serial of the server "
        "received for this slot)",
    ]


def test_nics_swapped_between_two_servers_are_named_on_both() -> None:
    servers = (
        server("r1-cmp1", "SN1", dict(MACS["r1-cmp1"])),
        server("r1-cmp2", "SN2", dict(MACS["r1-cmp2"])),
    )
    crossed1 = MACS["r1-cmp1"] | {"eth1": MACS["r1-cmp2"]["eth1"]}
    crossed2 = MACS["r1-cmp2"] | {"eth1": MACS["r1-cmp1"]["eth1"]}
    found = check(servers, {"r1-cmp1": reported("SN1", crossed1), "r1-cmp2": reported("SN2", crossed2)})
    assert found.problems == [
        f"r1-cmp1:eth1 has MAC {MACS['r1-cmp2']['eth1']}, which NetBox holds for r1-cmp2:eth1 (NICs swapped between r1-cmp1 and r1-cmp2?)",
        f"r1-cmp2:eth1 has MAC {MACS['r1-cmp1']['eth1']}, which NetBox holds for r1-cmp1:eth1 (NICs swapped between r1-cmp2 and r1-cmp1?)",
    ]


def test_a_replaced_nic_a_missing_nic_and_a_mac_seen_twice_are_named() -> None:
    servers = (
        server("r1-cmp1", "SN1", dict(MACS["r1-cmp1"])),
        server("r1-cmp2", "SN2", dict.fromkeys(MACS["r1-cmp2"])),
    )
    found = check(
        servers,
        {
            "r1-cmp1": reported("SN1", {"eth0": MACS["r1-cmp1"]["eth0"], "eth1": "02:ff:00:00:00:01"}),
            "r1-cmp2": reported("SN2", {"eth0": "02:ff:00:00:00:01"}),
        },
    )
    assert found.problems == [
        f"r1-cmp1:eth1 has MAC 02:ff:00:00:00:01; NetBox holds {MACS['r1-cmp1']['eth1']} (NIC replaced?)",
        "r1-cmp2: its BMC reports no NIC eth1 (it reports: eth0)",
        "MAC 02:ff:00:00:00:01 is reported by more than one NIC: r1-cmp1:eth1, r1-cmp2:eth0",
    ]


def test_a_bmc_that_did_not_answer_is_named_and_the_others_still_checked() -> None:
    found = check(
        new_servers(),
        {"r1-cmp1": reported("SN9", MACS["r1-cmp1"])},
        errors={"r1-cmp2": "BMC 198.18.32.9: connecting: no answer within 2 s"},
    )
    assert (
        found.problems[0] == "r1-cmp2: BMC did not answer: BMC 198.18.32.9: connecting: no answer within 2 s"
    )
    assert "'SN9'" in found.problems[1]


def test_preflight_names_a_server_without_a_bmc_address() -> None:
    servers = (server("r1-cmp1", "SN1", {}), server("r1-cmp2", "SN2", {}, oob=None))
    assert bmc_problems(servers) == [
        "server r1-cmp2: NetBox has no OOB IP for it (its BMC's address, on interface 'bmc')"
    ]


def test_the_rows_say_what_was_learnt_and_a_rerun_says_nothing_changed() -> None:
    from atlas.core.model import Change

    servers = new_servers()
    inventories = {n: reported(s, MACS[n], Power.OFF) for n, s in (("r1-cmp1", "SN1"), ("r1-cmp2", "SN2"))}
    found = check(servers, inventories)
    recorded = [
        Change(target="r1-cmp1", what="eth0 MAC", before=None, after=MACS["r1-cmp1"]["eth0"], changed=True)
    ]
    rows = discover_results(servers, found, recorded, dry_run=True)
    assert isinstance(rows, Results)
    assert [r.changed for r in rows] == [True, False]
    assert f"would record eth0 {MACS['r1-cmp1']['eth0']}" in rows[0].detail
