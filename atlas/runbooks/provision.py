"""Rack bring-up before SSH: every server's BMC is asked what is in the slot, then what is off is
switched on.

discover: each server's BMC (NetBox's OOB IP of the device, the site's BMC login from Vault) reports
its serial number and NIC MACs; they are checked against NetBox before anything is powered. A server
in the wrong slot (the serial NetBox records for another device), a serial NetBox does not know, a
NIC whose MAC NetBox holds for another server (NICs swapped), a BMC that does not answer: each is
named, and nothing is changed anywhere. MACs of a brand-new server (NetBox has none for its NICs) are
recorded in NetBox, once everything checked.

install: a server whose NetBox record names an OS image (custom field os_image) and that runs none
Atlas installed (os_installed) boots once from the network into it: its DHCP reservation goes to the
provisioning service (atlas.provisioning), its BMC is told to boot once from the network, and the run
waits, bounded, for SSH with the host key the image's manifest records; a boot that stopped in the
firmware (the BMC's boot progress says why) fails that server at once. One on that was never
recorded is checked by its host key (an earlier run's install, killed before it recorded it, is not
repeated); one with another image is left alone unless the form says re-image.

power: a server that is off is switched on and booted from its disk; one that runs is left alone.
`check_discovery` and `plan_installs` are pure; the rest talks to BMCs through atlas.bmc, many at once.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import paramiko
import pynetbox

from atlas.bmc import Bmc, BmcError, BmcLogin, BootSource, Inventory, Power, connect
from atlas.core.model import Change, Device, InterfaceKind
from atlas.core.run import Readings, Result, Results, poll_until, read_each, run_each
from atlas.core.settings import AtlasSettings
from atlas.images.catalog import Manifest
from atlas.provisioning import ProvisioningClient, Reservation
from atlas.secrets import SecretError, Vault, site_bmc_path
from atlas.sot.schema import OS_IMAGE_FIELD, OS_INSTALLED_FIELD
from atlas.sot.write import record_macs, set_devices_custom_fields

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
    servers: tuple[Device, ...],
    bmcs: Mapping[str, Bmc],
    discovery: Discovery,
    dry_run: bool,
    installing: frozenset[str] = frozenset(),
) -> Results:
    """Switches on every server that is off (its next boot from its disk); the ones on stay as they
    are; the ones `installing` boot from the network instead (start_installs)."""

    def one(d: Device) -> Result:
        if d.name in installing:
            return Result.unchanged(d.name, POWER, "powered by its network boot")
        if discovery.inventories[d.name].power == Power.ON:
            return Result.unchanged(d.name, POWER, "already on")
        if dry_run:
            return Result(target=d.name, step=POWER, changed=True, detail="would power on (boot from disk)")
        bmcs[d.name].power_on(BootSource.DISK)
        return Result(target=d.name, step=POWER, changed=True, detail="powered on (boot from disk)")

    return run_each(one, servers, POWER)


# --- install: a one-time network boot into the image NetBox names ---------------------------------
INSTALL = "install (network boot)"
INSTALL_WAIT = 300.0  # seconds for a network boot to fetch, write and boot the image to SSH


@dataclass(frozen=True)
class InstallPlan:
    """Which servers boot from the network now (server -> image version), which may already run
    their image (on, never recorded: their SSH host key tells), and why the others are left alone."""

    install: dict[str, str] = field(default_factory=dict)
    check: dict[str, str] = field(default_factory=dict)
    left: dict[str, str] = field(default_factory=dict)

    @property
    def wanted(self) -> dict[str, str]:
        return self.install | self.check


def halted_in_firmware(boot_progress: str) -> bool:
    """The BMC says the last boot stopped before any operating system (nothing runs on the server)."""
    return "failed" in boot_progress or "no bootable device" in boot_progress.lower()


def plan_installs(servers: tuple[Device, ...], discovery: Discovery, reimage: bool) -> InstallPlan:
    """Pure: a server whose NetBox record names an OS image (custom field os_image) is installed
    when it has none that Atlas installed and is off (a new server), or when the form says re-image
    and it has another; one already running its image is left as it is; one with another image, or
    running an operating system Atlas did not install, is left alone unless the form says re-image."""
    install: dict[str, str] = {}
    check: dict[str, str] = {}
    left: dict[str, str] = {}
    for d in servers:
        wanted = str(d.custom_fields.get(OS_IMAGE_FIELD) or "")
        if not wanted:
            continue
        installed = str(d.custom_fields.get(OS_INSTALLED_FIELD) or "")
        inv = discovery.inventories[d.name]
        halted = inv.power == Power.ON and halted_in_firmware(inv.boot_progress)
        if installed == wanted:
            left[d.name] = f"runs {wanted}, as NetBox names"
        elif reimage:
            install[d.name] = wanted
        elif installed:
            left[d.name] = (
                f"has {installed}, NetBox names {wanted}: left alone (the form did not say re-image)"
            )
        elif inv.power == Power.ON and not halted:  # running, or booting (an earlier run's install)
            check[d.name] = wanted
        else:
            install[d.name] = wanted
    return InstallPlan(install=install, check=check, left=left)


def install_problems(
    servers: tuple[Device, ...], plan: InstallPlan, manifests: Mapping[str, Manifest | None]
) -> list[str]:
    """Why the planned installs cannot start (each named; nothing is powered then)."""
    problems = []
    by_name = {d.name: d for d in servers}
    for name, version in sorted(plan.wanted.items()):
        manifest = manifests.get(version)
        if manifest is None:
            problems.append(
                f"{name}: image {version}, which NetBox names for it, is not in the image catalog"
            )
        elif not manifest.ssh_host_key:
            problems.append(
                f"{name}: image {version} records no SSH host key in its manifest: a server booted from it "
                "cannot be told from another (publish it with its host key)"
            )
        d = by_name[name]
        if d.mgmt_address is None:
            problems.append(f"{name}: NetBox has no management address for it (its DHCP reservation)")
        if not d.nics or d.nics[0].kind != InterfaceKind.MGMT:
            problems.append(f"{name}: NetBox has no management NIC for it (the NIC it boots from)")
    return problems


def reservations(
    servers: tuple[Device, ...], plan: InstallPlan, discovery: Discovery, client: ProvisioningClient
) -> list[Reservation]:
    """A DHCP reservation per server to install: its first NIC's MAC as its BMC reported it (and
    NetBox now holds), its management address, its name, its image's URL."""
    found = []
    for d in servers:
        if d.name not in plan.install or d.mgmt_address is None:
            continue
        nic = d.nics[0]
        found.append(
            Reservation(
                mac=discovery.inventories[d.name].nics[nic.name],
                address=d.mgmt_address.ip,
                hostname=d.name,
                boot_url=client.image_url(plan.install[d.name]),
            )
        )
    return found


def reserve(
    client: ProvisioningClient,
    rack: str,
    servers: tuple[Device, ...],
    plan: InstallPlan,
    discovery: Discovery,
    dry_run: bool,
) -> bool:
    """The rack's DHCP reservations for the servers to install; True when DHCP changed. A server
    the run does not install keeps the reservation it has (a re-image boots it again)."""
    if not plan.install or dry_run:
        return False
    kept = {r.hostname: r for r in client.reservations(rack) if r.hostname not in plan.install}
    wanted = reservations(servers, plan, discovery, client)
    return client.put(rack, sorted([*kept.values(), *wanted]))


def start_installs(
    servers: tuple[Device, ...],
    bmcs: Mapping[str, Bmc],
    plan: InstallPlan,
    discovery: Discovery,
    dry_run: bool,
) -> Results:
    """Each server to install boots once from the network (one that runs is switched off first:
    only a re-image gets there); the servers left alone get their row saying why."""

    def one(d: Device) -> Result:
        if d.name in plan.left:
            return Result.unchanged(d.name, INSTALL, plan.left[d.name])
        if d.name in plan.check:
            return Result.unchanged(
                d.name, INSTALL, f"on: checking it runs {plan.check[d.name]} (its host key)"
            )
        version = plan.install[d.name]
        if dry_run:
            return Result(
                target=d.name,
                step=INSTALL,
                changed=True,
                detail=f"would boot once from the network into {version}",
            )
        bmc = bmcs[d.name]
        if discovery.inventories[d.name].power == Power.ON:
            bmc.power_off()
        bmc.power_on(BootSource.HTTP)
        return Result(
            target=d.name, step=INSTALL, changed=True, detail=f"booting once from the network into {version}"
        )

    return run_each(one, [d for d in servers if d.name in plan.install | plan.check | plan.left], INSTALL)


def host_key(address: str, timeout: float = 5.0, port: int = 22) -> str | None:
    """The server's SSH host key ("type base64"), or None while its SSH does not answer."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=timeout)
                key = transport.get_remote_server_key()
                return f"{key.get_name()} {key.get_base64()}"
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError):
        return None


def _key(line: str) -> str:
    return " ".join(line.split()[:2])


def wait_installed(
    servers: tuple[Device, ...],
    bmcs: Mapping[str, Bmc],
    plan: InstallPlan,
    manifests: Mapping[str, Manifest | None],
    timeout: float = INSTALL_WAIT,
) -> Results:
    """Waits, bounded, for each server installing to answer SSH with its image's host key; a
    firmware that stopped (its BMC's boot progress says why) fails that server at once. A server
    found on and never recorded (running, or booting from an earlier run's install) is waited for
    alike: with its image's key it is recorded, with another it is left alone (not installed)."""
    waiting = {d.name: d for d in servers if d.name in plan.wanted}
    done = {name: Result.unchanged(name, INSTALL, why) for name, why in plan.left.items()}

    def answered(name: str, version: str, found: str, want: str) -> Result:
        if _key(found) == _key(want):
            verb = "installed" if name in plan.install else "runs"
            return Result(
                target=name, step=INSTALL, changed=True, detail=f"{verb} {version} (its host key): recorded"
            )
        if name in plan.check:
            return Result.unchanged(
                name,
                INSTALL,
                f"runs an operating system Atlas did not install (host key {found}): left alone "
                "(the form did not say re-image)",
            )
        return Result.failure(
            name, INSTALL, f"answers SSH with host key {found}, not the key {version} was built with"
        )

    def check(d: Device) -> Result | None:
        """The server's outcome once it has one: SSH answers, or its firmware stopped."""
        assert d.mgmt_address is not None
        version = plan.wanted[d.name]
        manifest = manifests[version]
        assert manifest is not None
        found = host_key(str(d.mgmt_address.ip), timeout=3.0)
        if found is not None:
            return answered(d.name, version, found, manifest.ssh_host_key)
        try:
            progress = bmcs[d.name].inventory().boot_progress
        except BmcError:
            return None  # a BMC that does not answer now may answer in a moment: SSH decides
        if halted_in_firmware(progress):
            return Result.failure(d.name, INSTALL, f"network boot of {version} stopped: {progress}")
        return None

    def step() -> dict[str, Result]:
        # every server waited for at once: one slow to answer does not delay noticing the others
        for name, outcome in read_each(check, list(waiting.values())).values.items():
            if outcome is not None:
                del waiting[name]
                done[name] = outcome
        return done

    poll_until(step, lambda _: not waiting, timeout=timeout, pause=1.0)
    for name in sorted(waiting):
        done[name] = Result.failure(
            name,
            INSTALL,
            f"did not answer SSH within {timeout:.0f} s of its network boot (BMC: {_last_progress(bmcs[name])})",
        )
    return Results(done[d.name] for d in servers if d.name in done)


def _last_progress(bmc: Bmc) -> str:
    try:
        return bmc.inventory().boot_progress or "no boot progress"
    except BmcError as e:
        return str(e)


def installed_records(plan: InstallPlan, results: Results) -> dict[str, str]:
    """Server -> image for every server that now runs its image by a network boot or was found to."""
    return {
        r.target: plan.wanted[r.target] for r in results if r.step == INSTALL and r.changed and not r.failed
    }


def record_installed(
    nb: pynetbox.api, servers: tuple[Device, ...], installed: Mapping[str, str]
) -> list[Change]:
    """NetBox's record of what Atlas installed on each server (custom field os_installed)."""
    return set_devices_custom_fields(
        nb, [(d, {OS_INSTALLED_FIELD: installed[d.name]}) for d in servers if d.name in installed]
    )
