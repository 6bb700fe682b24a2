"""Topology files: how a site is described for import into NetBox.

A topology is a set of YAML files (the lab's lives in inventory/lab/). `load_topology` reads and
checks them all and either returns the sites as models or raises `TopologyError` naming every problem,
so nothing is written to NetBox from data that is partly wrong.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas.core.errors import Refused
from atlas.core.model import (
    Cable,
    Device,
    DeviceStatus,
    Endpoint,
    Interface,
    InterfaceKind,
    Prefix,
    Rack,
    RackStatus,
    Role,
    Site,
)
from atlas.core.safety import name_problem, text_problem
from atlas.sot.schema import OOB_INTERFACE

MGMT_INTERFACE = "eth0"
LOOPBACK_INTERFACE = "lo"
OOB_ROLE = "oob"  # the prefix role of the out-of-band network


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortRange(Spec):
    prefix: str
    first: int = 1
    count: int = Field(ge=1, le=128)

    def names(self) -> list[str]:
        return [f"{self.prefix}{n}" for n in range(self.first, self.first + self.count)]


class DeviceTypeSpec(Spec):
    name: str
    manufacturer: str = "Atlas Lab"
    ports: list[PortRange]
    disks: list[PortRange] = []  # data disks (NetBox inventory items of role "disk"), e.g. OSD devices
    bmc: bool = False  # a BMC on the out-of-band network (servers): interface "bmc", the OOB IP

    def interface_names(self) -> list[str]:
        return [
            MGMT_INTERFACE,
            LOOPBACK_INTERFACE,
            *(n for r in self.ports for n in r.names()),
            *([OOB_INTERFACE] if self.bmc else []),
        ]

    def disk_names(self) -> list[str]:
        return [n for r in self.disks for n in r.names()]


class RackSpec(Spec):
    name: str
    status: str = "planned"


class PrefixSpec(Spec):
    prefix: IPv4Network
    role: str
    description: str = ""


class SiteSpec(Spec):
    name: str
    description: str = ""
    racks: list[RackSpec] = []
    prefixes: list[PrefixSpec] = []


class DeviceSpec(Spec):
    name: str
    site: str
    rack: str | None = None
    role: str
    type: str
    platform: str | None = None
    status: str = "planned"
    mgmt: IPv4Interface | None = None
    oob: IPv4Interface | None = None  # the BMC's address (its device type has a BMC)
    serial: str = ""  # the serial number recorded when the hardware arrived
    loopback: IPv4Interface | None = None
    anycast: list[IPv4Interface] = []  # service addresses the server announces (/32, shared by design)
    custom_fields: dict[str, Any] = {}


class CableSpec(Spec):
    a: str
    b: str
    a_address: IPv4Interface | None = None
    b_address: IPv4Interface | None = None
    description: str = ""


class TopologyFile(Spec):
    device_types: list[DeviceTypeSpec] = []
    sites: list[SiteSpec] = []
    prefixes: list[PrefixSpec] = []
    devices: list[DeviceSpec] = []
    cables: list[CableSpec] = []


class Topology(BaseModel):
    """The checked intent: what NetBox should hold after an import."""

    model_config = ConfigDict(frozen=True)

    device_types: tuple[DeviceTypeSpec, ...]
    sites: tuple[Site, ...]
    global_prefixes: tuple[Prefix, ...]

    def all_devices(self) -> list[Device]:
        return [d for s in self.sites for d in s.devices]

    def site_as_read(self, name: str) -> Site:
        """The site as Atlas reads it from NetBox once imported: with the prefixes no site scopes."""
        site = next(s for s in self.sites if s.name == name)
        return site.model_copy(update={"prefixes": (*site.prefixes, *self.global_prefixes)})

    def all_cables(self) -> list[Cable]:
        seen: dict[frozenset[Endpoint], Cable] = {}
        for s in self.sites:
            for c in s.cables:
                seen.setdefault(frozenset(c.ends()), c)
        return list(seen.values())

    def device(self, name: str) -> Device | None:
        return next((d for d in self.all_devices() if d.name == name), None)


class TopologyError(Refused):
    headline = "{n} problem(s) in the topology, nothing was written"


def read_files(paths: Iterable[Path]) -> tuple[list[tuple[str, TopologyFile]], list[str]]:
    files: list[tuple[str, TopologyFile]] = []
    problems: list[str] = []
    for path in paths:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            files.append((path.name, TopologyFile.model_validate(raw)))
        except yaml.YAMLError as e:
            problems.append(f"{path.name}: not valid YAML: {e}")
        except ValidationError as e:
            for err in e.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{path.name}: {where}: {err['msg']}")
    return files, problems


def topology_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.is_file())


def load_topology(directory_or_files: Path | list[Path]) -> Topology:
    paths = (
        topology_paths(directory_or_files)
        if isinstance(directory_or_files, Path)
        else list(directory_or_files)
    )
    if not paths:
        raise TopologyError([f"no topology files found in {directory_or_files}"])
    files, problems = read_files(paths)
    topology, more = build_topology([f for _, f in files])
    problems += more
    if problems:
        raise TopologyError(problems)
    return topology


def _duplicates(names: Iterable[str]) -> list[str]:
    return sorted(n for n, k in Counter(names).items() if k > 1)


def _split_end(text: str) -> Endpoint | None:
    device, sep, interface = text.partition(":")
    if not sep or not device or not interface:
        return None
    return Endpoint(device=device, interface=interface)


class _Checker:
    """Collects every problem of a merged topology instead of stopping at the first."""

    def __init__(self, merged: TopologyFile) -> None:
        self.t = merged
        self.problems: list[str] = []
        self.types = {dt.name: dt for dt in merged.device_types}
        self.sites = {s.name: s for s in merged.sites}
        self.racks = {r.name: s.name for s in merged.sites for r in s.racks}
        self.devices = {d.name: d for d in merged.devices}

    def add(self, problem: str | None) -> None:
        if problem:
            self.problems.append(problem)

    def check(self) -> None:
        t = self.t
        for what, names in (
            ("device type", [d.name for d in t.device_types]),
            ("site", [s.name for s in t.sites]),
            ("rack", [r.name for s in t.sites for r in s.racks]),
            ("device", [d.name for d in t.devices]),
        ):
            for dup in _duplicates(names):
                self.add(f"{what} {dup!r} is defined more than once")
        for site in t.sites:
            self.add(name_problem("site", site.name))
            self.add(text_problem(f"site {site.name} description", site.description))
            for rack in site.racks:
                self.add(name_problem("rack", rack.name))
                if rack.status not in RackStatus:
                    self.add(f"rack {rack.name}: unknown status {rack.status!r}")
        for dt in t.device_types:
            self.add(name_problem("device type", dt.name))
            for dup in _duplicates(dt.interface_names()):
                self.add(f"device type {dt.name}: interface {dup!r} defined more than once")
        for device in t.devices:
            self.check_device(device)
        self.check_cables()
        self.check_addresses()

    def check_device(self, d: DeviceSpec) -> None:
        self.add(name_problem("device", d.name))
        if d.site not in self.sites:
            self.add(f"device {d.name}: unknown site {d.site!r}")
        if d.rack is not None:
            if d.rack not in self.racks:
                self.add(f"device {d.name}: unknown rack {d.rack!r}")
            elif self.racks[d.rack] != d.site:
                self.add(f"device {d.name}: rack {d.rack} belongs to site {self.racks[d.rack]}, not {d.site}")
        if d.type not in self.types:
            self.add(f"device {d.name}: unknown device type {d.type!r}")
        if d.role not in Role:
            self.add(f"device {d.name}: unknown role {d.role!r} (known: {', '.join(Role)})")
        if d.status not in DeviceStatus:
            self.add(f"device {d.name}: unknown status {d.status!r}")
        if d.platform is not None:
            self.add(name_problem(f"device {d.name} platform", d.platform))
        if d.mgmt is None:
            self.add(f"device {d.name}: no management address")
        dt = self.types.get(d.type)
        if d.oob is not None and dt is not None and not dt.bmc:
            self.add(f"device {d.name}: an OOB address {d.oob}, but its type {d.type} has no BMC")
        if d.serial:
            self.add(text_problem(f"device {d.name} serial", d.serial))
        if d.loopback is not None and d.loopback.network.prefixlen != 32:
            self.add(f"device {d.name}: loopback {d.loopback} is not a /32")
        if d.role in (Role.SPINE, Role.LEAF, Role.CORE) and d.loopback is None:
            self.add(f"device {d.name}: a {d.role} needs a loopback address")
        if d.anycast and d.role not in (Role.COMPUTE, Role.STORAGE):
            self.add(f"device {d.name}: only servers announce anycast addresses, not a {d.role}")
        if d.anycast and d.loopback is None:
            self.add(f"device {d.name}: announcing anycast addresses needs a loopback (the OSPF router id)")
        for a in d.anycast:
            if a.network.prefixlen != 32:
                self.add(f"device {d.name}: anycast address {a} is not a /32")
        for dup in _duplicates([str(a) for a in d.anycast]):
            self.add(f"device {d.name}: anycast address {dup} listed more than once")

    def check_cables(self) -> None:
        used: dict[Endpoint, str] = {}
        for n, c in enumerate(self.t.cables, 1):
            label = f"cable {n} ({c.a} -- {c.b})"
            self.add(text_problem(f"{label} description", c.description))
            ends = [_split_end(c.a), _split_end(c.b)]
            for raw, end in zip((c.a, c.b), ends, strict=True):
                if end is None:
                    self.add(f"{label}: end {raw!r} is not 'device:interface'")
                    continue
                self.check_end(label, end)
                if end in used:
                    self.add(f"{label}: {end} is already cabled by {used[end]}")
                used.setdefault(end, label)
            if ends[0] is not None and ends[0] == ends[1]:
                self.add(f"{label}: both ends are the same interface")
            if (c.a_address is None) != (c.b_address is None):
                self.add(f"{label}: only one end has an address")
            elif c.a_address is not None and c.b_address is not None:
                if c.a_address.network != c.b_address.network:
                    self.add(f"{label}: {c.a_address} and {c.b_address} are not in one subnet")
                elif c.a_address.ip == c.b_address.ip:
                    self.add(f"{label}: both ends have the address {c.a_address.ip}")

    def check_end(self, label: str, end: Endpoint) -> None:
        device = self.devices.get(end.device)
        if device is None:
            self.add(f"{label}: unknown device {end.device!r}")
            return
        dt = self.types.get(device.type)
        if dt is None:
            return  # already named as an unknown device type
        if end.interface not in dt.interface_names():
            self.add(f"{label}: device {end.device} ({dt.name}) has no interface {end.interface!r}")
        elif end.interface in (MGMT_INTERFACE, LOOPBACK_INTERFACE, OOB_INTERFACE):
            self.add(f"{label}: {end} is a management, loopback or BMC interface and cannot be cabled")

    def check_addresses(self) -> None:
        owners: dict[str, list[str]] = defaultdict(list)
        for d in self.t.devices:
            if d.mgmt is not None:
                owners[str(d.mgmt.ip)].append(f"{d.name}:{MGMT_INTERFACE}")
            if d.oob is not None:
                owners[str(d.oob.ip)].append(f"{d.name}:{OOB_INTERFACE}")
            if d.loopback is not None:
                owners[str(d.loopback.ip)].append(f"{d.name}:{LOOPBACK_INTERFACE}")
        for c in self.t.cables:
            for end, addr in ((c.a, c.a_address), (c.b, c.b_address)):
                if addr is not None:
                    owners[str(addr.ip)].append(end)
        for ip, where in sorted(owners.items()):
            if len(where) > 1:
                self.add(f"address {ip} is used more than once: {', '.join(where)}")
        for d in self.t.devices:
            for a in sorted(set(d.anycast)):
                if str(a.ip) in owners:
                    self.add(
                        f"device {d.name}: anycast address {a.ip} is also {', '.join(owners[str(a.ip)])}"
                    )
        mgmt = [p.prefix for p in self.all_prefixes() if p.role == "management"]
        for d in self.t.devices:
            if d.mgmt is not None and mgmt and not any(d.mgmt.ip in net for net in mgmt):
                self.add(f"device {d.name}: management address {d.mgmt} is outside every management prefix")
        oob = [p.prefix for p in self.all_prefixes() if p.role == OOB_ROLE]
        for d in self.t.devices:
            if d.oob is not None and not any(d.oob.ip in net for net in oob):
                self.add(f"device {d.name}: OOB address {d.oob} is outside every prefix of role {OOB_ROLE!r}")
        for dup in _duplicates([d.serial for d in self.t.devices if d.serial]):
            self.add(f"serial {dup!r} is recorded for more than one device")

    def all_prefixes(self) -> list[PrefixSpec]:
        return [*self.t.prefixes, *(p for s in self.t.sites for p in s.prefixes)]


def _merge(files: list[TopologyFile]) -> TopologyFile:
    merged = TopologyFile()
    for f in files:
        merged.device_types += f.device_types
        merged.sites += f.sites
        merged.prefixes += f.prefixes
        merged.devices += f.devices
        merged.cables += f.cables
    return merged


def build_topology(files: list[TopologyFile]) -> tuple[Topology, list[str]]:
    merged = _merge(files)
    checker = _Checker(merged)
    checker.check()
    if checker.problems:
        return Topology(device_types=(), sites=(), global_prefixes=()), checker.problems
    return _to_models(merged, checker), []


def _to_models(t: TopologyFile, checker: _Checker) -> Topology:
    cable_addresses: dict[Endpoint, IPv4Interface] = {}
    cables_by_device: dict[str, list[Cable]] = defaultdict(list)
    for c in t.cables:
        a, b = _split_end(c.a), _split_end(c.b)
        assert a is not None and b is not None  # checked
        cable = Cable(a=a, b=b)
        cables_by_device[a.device].append(cable)
        cables_by_device[b.device].append(cable)
        if c.a_address is not None and c.b_address is not None:
            cable_addresses[a], cable_addresses[b] = c.a_address, c.b_address
    descriptions = {
        end: c.description for c in t.cables for end in (_split_end(c.a), _split_end(c.b)) if end is not None
    }

    def interfaces(d: DeviceSpec) -> tuple[Interface, ...]:
        out = []
        for name in checker.types[d.type].interface_names():
            end = Endpoint(device=d.name, interface=name)
            if name == MGMT_INTERFACE:
                kind, addrs = InterfaceKind.MGMT, (d.mgmt,)
            elif name == LOOPBACK_INTERFACE:
                kind, addrs = InterfaceKind.LOOPBACK, (d.loopback,)
            elif name == OOB_INTERFACE:
                kind, addrs = InterfaceKind.OOB, (d.oob,)
            else:
                kind, addrs = InterfaceKind.PHYSICAL, (cable_addresses.get(end),)
            out.append(
                Interface(
                    name=name,
                    kind=kind,
                    description=descriptions.get(end, ""),
                    addresses=tuple(a for a in addrs if a is not None),
                )
            )
        return tuple(out)

    sites = []
    for s in t.sites:
        devices = tuple(
            Device(
                name=d.name,
                site=d.site,
                rack=d.rack,
                role=Role(d.role),
                platform=d.platform,
                status=DeviceStatus(d.status),
                device_type=d.type,
                serial=d.serial,
                mgmt_address=d.mgmt,
                loopback=d.loopback,
                anycast=tuple(d.anycast),
                interfaces=interfaces(d),
                disks=tuple(checker.types[d.type].disk_names()),
                custom_fields=d.custom_fields,
            )
            for d in t.devices
            if d.site == s.name
        )
        site_cables = {id(c): c for d in devices for c in cables_by_device[d.name]}
        sites.append(
            Site(
                name=s.name,
                description=s.description,
                racks=tuple(Rack(name=r.name, site=s.name, status=RackStatus(r.status)) for r in s.racks),
                devices=devices,
                cables=tuple(site_cables.values()),
                prefixes=tuple(
                    Prefix(prefix=p.prefix, role=p.role, site=s.name, description=p.description)
                    for p in s.prefixes
                ),
            )
        )
    return Topology(
        device_types=tuple(t.device_types),
        sites=tuple(sites),
        global_prefixes=tuple(
            Prefix(prefix=p.prefix, role=p.role, description=p.description) for p in t.prefixes
        ),
    )
