"""Rack bring-up before SSH: every server's BMC is asked what is in the slot, then what is off is
switched on.

discover: each server's BMC (NetBox's OOB IP of the device, the site's BMC login from Vault) reports
its serial number and NIC MACs; they are checked against NetBox before anything is powered. A server
in the wrong slot (the serial NetBox records for another device), a serial NetBox does not know, a
NIC whose MAC NetBox holds for another server (NICs swapped), a BMC that does not answer: each is
named, and nothing is changed anywhere. MACs of a brand-new server (NetBox has none for its NICs) are
recorded in NetBox, once everything checked.

power: a server that is off is switched on and booted from its disk; one that runs is left alone.
`check_discovery` is pure; the rest talks to BMCs through atlas.bmc, many at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pynetbox

from atlas.bmc import Bmc, BmcLogin, BootSource, Inventory, Power, connect
from atlas.core.model import Change, Device
from atlas.core.run import Readings, Result, Results, read_each, run_each
from atlas.core.settings import AtlasSettings
from atlas.secrets import SecretError, Vault, site_bmc_path
from atlas.sot.write import record_macs

DISCOVER = "discover (BMC against NetBox)"
POWER = "power on"


@dataclass(frozen=True)
class Discovery:
    """What the BMCs reported, what differs from NetBox (nothing may be changed then) and the MACs
    NetBox does not hold yet (server -> NIC -> MAC)."""

    inventories: dict[str, Inventory]
    problems: list[str] = field(default_factory=list)
    learnt: dict[str, dict[str, str]] = field(default_factory=dict)


def bmc_problems(servers: tuple[Device, ...]) -> list[str]:
    """Preflight: every server needs its BMC's address in NetBox."""
    return [
        f"server {d.name}: NetBox has no OOB IP for it (its BMC's address, on interface 'bmc')"
        for d in servers
        if d.oob_address is None
    ]


def bmc_logins(
    servers: tuple[Device, ...], site: str, vault: Vault, settings: AtlasSettings
) -> dict[str, BmcLogin]:
    """Each server's BMC login: its address from NetBox, the site's login from Vault (read once)."""
    secret = vault.read(site_bmc_path(site))
    missing = [k for k in ("username", "password") if not secret.get(k)]
    if missing:
        raise SecretError(f"secret {site_bmc_path(site)} has no {' and no '.join(missing)}")
    return {
        d.name: BmcLogin(
            address=d.oob_address.ip,
            username=str(secret["username"]),
            password=str(secret["password"]),
            scheme=settings.bmc_scheme,
            ca_file=settings.bmc_ca_file,
            timeout=settings.bmc_timeout,
        )
        for d in servers
        if d.oob_address is not None
    }


def connect_all(logins: Mapping[str, BmcLogin], protocol: str) -> dict[str, Bmc]:
    return {name: connect(protocol, login) for name, login in logins.items()}


def read_inventories(servers: tuple[Device, ...], bmcs: Mapping[str, Bmc]) -> Readings[Inventory]:
    return read_each(lambda d: bmcs[d.name].inventory(), [d for d in servers if d.name in bmcs])


def check_discovery(
    servers: tuple[Device, ...], site_devices: tuple[Device, ...], readings: Readings[Inventory]
) -> Discovery:
    """Every difference between what the BMCs report and what NetBox holds, named (pure)."""
    problems = [f"{name}: BMC did not answer: {why}" for name, why in sorted(readings.errors.items())]
    serial_owner = {d.serial: d.name for d in site_devices if d.serial}
    mac_owner = {i.mac: (d.name, i.name) for d in site_devices for i in d.nics if i.mac}
    reported_by: dict[str, list[str]] = {}
    learnt: dict[str, dict[str, str]] = {}
    for d in servers:
        inv = readings.values.get(d.name)
        if inv is None:
            continue
        if not d.serial:
            problems.append(
                f"{d.name}: NetBox records no serial for it; its BMC reports {inv.serial!r} "
                "(record the serial of the server received for this slot)"
            )
        elif inv.serial != d.serial:
            other = serial_owner.get(inv.serial)
            problems.append(
                f"{d.name}: its BMC reports serial {inv.serial!r}, which NetBox records for {other}: "
                f"is {other} racked in {d.name}'s slot?"
                if other
                else f"{d.name}: its BMC reports serial {inv.serial!r}, which NetBox does not know "
                f"(NetBox records {d.serial!r} for {d.name})"
            )
        for nic in d.nics:
            mac = inv.nics.get(nic.name)
            if mac is None:
                reported = ", ".join(inv.nics) or "none"
                problems.append(f"{d.name}: its BMC reports no NIC {nic.name} (it reports: {reported})")
                continue
            reported_by.setdefault(mac, []).append(f"{d.name}:{nic.name}")
            owner = mac_owner.get(mac)
            if owner is not None and owner != (d.name, nic.name):
                problems.append(
                    f"{d.name}:{nic.name} has MAC {mac}, which NetBox holds for {owner[0]}:{owner[1]} "
                    f"(NICs swapped between {d.name} and {owner[0]}?)"
                    if owner[0] != d.name
                    else f"{d.name}:{nic.name} has MAC {mac}, which NetBox holds for its {owner[1]} "
                    "(cards swapped inside the server?)"
                )
            elif nic.mac is None:
                learnt.setdefault(d.name, {})[nic.name] = mac
            elif nic.mac != mac:
                problems.append(f"{d.name}:{nic.name} has MAC {mac}; NetBox holds {nic.mac} (NIC replaced?)")
    for mac, where in sorted(reported_by.items()):
        if len(where) > 1:
            problems.append(f"MAC {mac} is reported by more than one NIC: {', '.join(where)}")
    return Discovery(
        inventories=dict(readings.values), problems=problems, learnt=learnt if not problems else {}
    )


def record_learnt(nb: pynetbox.api, discovery: Discovery, dry_run: bool) -> list[Change]:
    return record_macs(nb, discovery.learnt, dry_run=dry_run)


def discover_results(
    servers: tuple[Device, ...], discovery: Discovery, recorded: list[Change], dry_run: bool
) -> Results:
    """One row per server: what its BMC reported, and the MACs recorded (or that a dry run would)."""
    rows = Results()
    for d in servers:
        inv = discovery.inventories[d.name]
        learnt = [c for c in recorded if c.target == d.name and c.changed]
        detail = f"serial {inv.serial} as NetBox records it, {len(inv.nics)} NICs, power {inv.power}"
        if learnt:
            verb = "would record" if dry_run else "recorded"
            macs = ", ".join(f"{c.what.split()[0]} {c.after}" for c in learnt)
            rows.append(Result(target=d.name, step=DISCOVER, changed=True, detail=f"{detail}; {verb} {macs}"))
        else:
            rows.append(Result.unchanged(d.name, DISCOVER, detail))
    return rows


def power_on(
    servers: tuple[Device, ...], bmcs: Mapping[str, Bmc], discovery: Discovery, dry_run: bool
) -> Results:
    """Switches on every server that is off (its next boot from its disk); the ones on stay as they are."""

    def one(d: Device) -> Result:
        if discovery.inventories[d.name].power == Power.ON:
            return Result.unchanged(d.name, POWER, "already on")
        if dry_run:
            return Result(target=d.name, step=POWER, changed=True, detail="would power on (boot from disk)")
        bmcs[d.name].power_on(BootSource.DISK)
        return Result(target=d.name, step=POWER, changed=True, detail="powered on (boot from disk)")

    return run_each(one, servers, POWER)
