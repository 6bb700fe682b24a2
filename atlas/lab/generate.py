"""Writes lab topologies of any size in the topology-file format.

The default lab (inventory/lab/) was written by this module and is committed as plain data: the
loader reads files, never this code. The same generator grows the lab to a full datacenter for
benchmarks (`atlas lab generate --sites 1 --spines 4 --racks 12 --compute 20 --storage 0`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import yaml

from atlas.sot.topology import (
    OOB_ROLE,
    CableSpec,
    DeviceSpec,
    DeviceTypeSpec,
    PortRange,
    PrefixSpec,
    RackSpec,
    SiteSpec,
    TopologyFile,
)

SWITCH_TYPE = "atlas-switch-32"
SERVER_TYPE = "atlas-server-2"
STORAGE_TYPE = "atlas-storage-2"
SITE_NAMES = ("fra1", "ams1", "lon1", "par1", "dub1", "mad1")
DEFAULT_MGMT = IPv4Network("198.18.0.0/22")
DEFAULT_LOOPBACKS = IPv4Network("198.19.0.0/22")
DEFAULT_FABRIC = IPv4Network("198.18.64.0/18")
OOB_OFFSET = 32 << 8  # a lab's BMCs: its management range moved up 198.18.32.0 (labs side by side differ)


@dataclass(frozen=True)
class LabShape:
    sites: int = 2
    spines: int = 2
    racks: int = 2
    compute: int = 2
    storage: int = 1
    active_racks: int = 1  # the first racks of each site are in service; the rest are planned
    mgmt: IPv4Network = DEFAULT_MGMT
    loopbacks: IPv4Network = DEFAULT_LOOPBACKS
    fabric: IPv4Network = DEFAULT_FABRIC
    oob: IPv4Network | None = None  # by default the management range moved up by OOB_OFFSET
    core: bool = True

    @property
    def oob_network(self) -> IPv4Network:
        if self.oob is not None:
            return self.oob
        return IPv4Network((int(self.mgmt.network_address) + OOB_OFFSET, self.mgmt.prefixlen))


class _Addresses:
    def __init__(self, shape: LabShape) -> None:
        self._mgmt = shape.mgmt.hosts()
        next(self._mgmt)  # the first host is the lab's management bridge
        self._loop = shape.loopbacks.hosts()
        self._p2p: Iterator[IPv4Network] = shape.fabric.subnets(new_prefix=31)
        self.mgmt_len = shape.mgmt.prefixlen
        self._oob = shape.oob_network.hosts()
        next(self._oob)  # the first host is the lab's side of the out-of-band network
        self.oob_len = shape.oob_network.prefixlen

    def oob(self) -> IPv4Interface:
        return IPv4Interface(f"{next(self._oob)}/{self.oob_len}")

    @staticmethod
    def serial(device: str) -> str:
        """A serial number as a vendor prints it: stable per device name, unique in any lab."""
        return "LAB" + hashlib.sha256(device.encode()).hexdigest()[:10].upper()

    def mgmt(self) -> IPv4Interface:
        return IPv4Interface(f"{next(self._mgmt)}/{self.mgmt_len}")

    def loopback(self) -> IPv4Interface:
        return IPv4Interface(f"{next(self._loop)}/32")

    @staticmethod
    def anycast(shape: LabShape) -> IPv4Interface:
        """The service address every compute server announces: the last of the loopback range, far
        from the loopbacks handed out from its start."""
        return IPv4Interface(f"{shape.loopbacks.broadcast_address - 1}/32")

    def p2p(self) -> tuple[IPv4Interface, IPv4Interface]:
        net = next(self._p2p)
        a, b = IPv4Address(int(net.network_address)), IPv4Address(int(net.network_address) + 1)
        return IPv4Interface(f"{a}/31"), IPv4Interface(f"{b}/31")


def catalog() -> TopologyFile:
    return TopologyFile(
        device_types=[
            DeviceTypeSpec(name=SWITCH_TYPE, ports=[PortRange(prefix="swp", count=32)]),
            DeviceTypeSpec(name=SERVER_TYPE, ports=[PortRange(prefix="eth", first=1, count=2)], bmc=True),
            DeviceTypeSpec(
                name=STORAGE_TYPE,
                bmc=True,
                ports=[PortRange(prefix="eth", first=1, count=2)],
                disks=[PortRange(prefix="disk", first=1, count=1)],
            ),
        ]
    )


def generate(shape: LabShape) -> dict[str, TopologyFile]:
    """File name -> content: a catalog, one file per site, and the core that joins the sites (with a
    client behind it)."""
    addr = _Addresses(shape)
    files = {"00-catalog.yaml": catalog()}
    core = TopologyFile(
        sites=[SiteSpec(name="core", description="Backbone joining the sites")],
        prefixes=[
            PrefixSpec(prefix=shape.mgmt, role="management", description="lab management network"),
            PrefixSpec(prefix=shape.loopbacks, role="loopback", description="router loopbacks"),
            PrefixSpec(prefix=shape.fabric, role="fabric", description="point-to-point links"),
            PrefixSpec(prefix=shape.oob_network, role=OOB_ROLE, description="out-of-band network (BMCs)"),
        ],
    )
    if shape.core:
        core.devices.append(
            DeviceSpec(
                name="core1",
                site="core",
                role="core",
                type=SWITCH_TYPE,
                platform="frr",
                status="active",
                mgmt=addr.mgmt(),
                loopback=addr.loopback(),
            )
        )
    core_port = 0
    for s_index in range(shape.sites):
        site = SITE_NAMES[s_index]
        f = TopologyFile(sites=[SiteSpec(name=site, description=f"Lab site {site}")])
        spines = [f"{site}-spine{n}" for n in range(1, shape.spines + 1)]
        for name in spines:
            f.devices.append(
                DeviceSpec(
                    name=name,
                    site=site,
                    role="spine",
                    type=SWITCH_TYPE,
                    platform="frr",
                    status="active",
                    mgmt=addr.mgmt(),
                    loopback=addr.loopback(),
                )
            )
        spine_port = dict.fromkeys(spines, 0)
        for r_index in range(1, shape.racks + 1):
            rack = f"{site}-r{r_index:02d}"
            status = "active" if r_index <= shape.active_racks else "planned"
            f.sites[0].racks.append(RackSpec(name=rack, status=status))
            leaves = [f"{rack}-leaf{n}" for n in (1, 2)]
            for leaf in leaves:
                f.devices.append(
                    DeviceSpec(
                        name=leaf,
                        site=site,
                        rack=rack,
                        role="leaf",
                        type=SWITCH_TYPE,
                        platform="frr",
                        status=status,
                        mgmt=addr.mgmt(),
                        loopback=addr.loopback(),
                    )
                )
                for s_port, spine in enumerate(spines, 1):
                    spine_port[spine] += 1
                    a, b = addr.p2p()
                    f.cables.append(
                        CableSpec(
                            a=f"{spine}:swp{spine_port[spine]}",
                            b=f"{leaf}:swp{s_port}",
                            a_address=a,
                            b_address=b,
                        )
                    )
            servers = [(f"{rack}-cmp{n}", "compute") for n in range(1, shape.compute + 1)]
            servers += [(f"{rack}-sto{n}", "storage") for n in range(1, shape.storage + 1)]
            for port, (server, role) in enumerate(servers, shape.spines + 1):
                f.devices.append(
                    DeviceSpec(
                        name=server,
                        site=site,
                        rack=rack,
                        role=role,
                        type=STORAGE_TYPE if role == "storage" else SERVER_TYPE,
                        platform="debian",
                        status=status,
                        mgmt=addr.mgmt(),
                        oob=addr.oob(),
                        serial=addr.serial(server),
                        loopback=addr.loopback(),
                        anycast=[addr.anycast(shape)] if role == "compute" else [],
                    )
                )
                for nic, leaf in enumerate(leaves, 1):
                    a, b = addr.p2p()
                    f.cables.append(
                        CableSpec(a=f"{leaf}:swp{port}", b=f"{server}:eth{nic}", a_address=a, b_address=b)
                    )
        if shape.core:
            for spine in spines:
                core_port += 1
                a, b = addr.p2p()
                core.cables.append(
                    CableSpec(a=f"core1:swp{core_port}", b=f"{spine}:swp32", a_address=a, b_address=b)
                )
        files[f"10-{site}.yaml"] = f
    if shape.core:
        # a client outside every site, behind the core: it reaches the anycast service of all sites
        core.devices.append(
            DeviceSpec(
                name="client1",
                site="core",
                role="client",
                type=SERVER_TYPE,
                platform="debian",
                status="active",
                mgmt=addr.mgmt(),
            )
        )
        a, b = addr.p2p()
        core.cables.append(
            CableSpec(a=f"core1:swp{core_port + 1}", b="client1:eth1", a_address=a, b_address=b)
        )
    files["90-core.yaml"] = core
    return files


def write(files: dict[str, TopologyFile], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = directory / name
        data = content.model_dump(mode="json", exclude_defaults=True)
        # a status is worth reading even where it is the default
        for spec, dumped in zip(content.devices, data.get("devices", []), strict=True):
            dumped["status"] = spec.status
        for site, dumped_site in zip(content.sites, data.get("sites", []), strict=True):
            for rack, dumped in zip(site.racks, dumped_site.get("racks", []), strict=True):
                dumped["status"] = rack.status
        path.write_text(
            "# Written by `atlas lab generate`; edit freely, the loader reads only this data.\n"
            + yaml.safe_dump(data, sort_keys=False, width=120)
        )
        written.append(path)
    return written
