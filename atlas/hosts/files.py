"""The host baseline's files: a server's persistent configuration, rendered from its data in NetBox.

One definition for both sides: playbooks/host-baseline.yml writes exactly these files (and removes
the networkd files Atlas owns that are no longer among them), and atlas.hosts.facts compares a host
with them. Everything the baseline sets lives in a file that the host applies at boot (hostname,
systemd-sysctl, systemd-networkd, Debian's frr.service), so a reboot restores what a run set.

The management interface (eth0) is never here: it belongs to the server's provisioning. Nor is the
service interface's drain drop-in (SERVICE_DRAINED_DROPIN): it is the host's drain state.
Pure: data in, file contents out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from atlas.net.intent import SERVICE_INTERFACE, SERVICE_NETDEV_FILE, SERVICE_NETWORK_FILE
from atlas.net.render import RenderError

HOSTNAME_FILE = "/etc/hostname"
FACTS_FILE = "/etc/atlas/facts.json"
SYSCTL_FILE = "/etc/sysctl.d/90-atlas.conf"  # applied by systemd-sysctl at boot
NETWORKD_DIR = "/etc/systemd/network"
NIC_NETWORK_FILES = f"{NETWORKD_DIR}/20-atlas-*.network"  # one per fabric NIC and lo
FRR_CONFIG = "/etc/frr/frr.conf"
FRR_DAEMONS = "/etc/frr/daemons"  # which daemons Debian's frr.service starts

# Files Atlas owns outright: one of these on a host that the baseline does not list is left from
# data NetBox no longer has (a NIC removed, a server that stopped announcing), and is removed.
# On a routing host the routes FRR installs are FRR's: networkd must not remove them as foreign
NETWORKD_CONF = "/etc/systemd/networkd.conf.d/90-atlas.conf"
OWNED = (NIC_NETWORK_FILES, SERVICE_NETDEV_FILE, SERVICE_NETWORK_FILE, NETWORKD_CONF)
# The files a run wrote whose change it has not applied yet (a run that failed before its reload or
# restart): the next run applies them as its own changes. On /run: a reboot applies every file anyway.
PENDING_FILE = "/run/atlas/baseline.pending"
# Every path (or pattern) the baseline may write: what the facts read prints, a constant.
READ = (HOSTNAME_FILE, FACTS_FILE, SYSCTL_FILE, *OWNED, FRR_CONFIG, FRR_DAEMONS)

# The files whose change the playbook applies (a reload, a restart), by what it does with them.
APPLIED = {
    "hostname": HOSTNAME_FILE,
    "sysctl": SYSCTL_FILE,
    "networkd": NETWORKD_DIR,  # any file under it
    "networkd_conf": NETWORKD_CONF,
    "service_netdev": SERVICE_NETDEV_FILE,
    "frr_daemons": FRR_DAEMONS,
    "frr_config": FRR_CONFIG,
}
SYSCTLS = {  # the baseline's kernel parameters
    "net.ipv4.fib_multipath_hash_policy": "1",  # spread flows over both leaves by L4 hash
    "net.ipv4.conf.all.rp_filter": "0",  # replies may come back over the other leaf
}
KERNEL_LOOPBACK = "127.0.0.1/8"  # lo's own address: the kernel's, never networkd's to drop or re-add
# The service interface's kind: an ifb holds addresses and carries nothing, as a dummy does, and is
# built into kernels that lack the dummy driver (many container hosts' do)
SERVICE_KIND = "ifb"
ROUTE_LINK = "lo"  # whose file holds the ECMP default route: always there, tied to no one leaf

HEADER = (
    "# Written by Atlas (playbooks/host-baseline.yml) from NetBox; changes here are undone on its next run.\n"
)

# Debian's FRR 8.4 daemons file: the daemons it may start besides zebra and staticd (always started
# by frrinit.sh), in its order, and every daemon's options as Debian ships them.
FRR_OPTIONAL_DAEMONS = (
    "bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd", "nhrpd",
    "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd",
)  # fmt: skip
FRR_ALWAYS_STARTED = ("zebra", "staticd")
FRR_DAEMON_OPTIONS = {
    "zebra": "  -A 127.0.0.1 -s 90000000",
    "bgpd": "   -A 127.0.0.1",
    "ospfd": "  -A 127.0.0.1",
    "ospf6d": " -A ::1",
    "ripd": "   -A 127.0.0.1",
    "ripngd": " -A ::1",
    "isisd": "  -A 127.0.0.1",
    "pimd": "   -A 127.0.0.1",
    "pim6d": "  -A ::1",
    "ldpd": "   -A 127.0.0.1",
    "nhrpd": "  -A 127.0.0.1",
    "eigrpd": " -A 127.0.0.1",
    "babeld": " -A 127.0.0.1",
    "sharpd": " -A 127.0.0.1",
    "pbrd": "   -A 127.0.0.1",
    "staticd": "-A 127.0.0.1",
    "bfdd": "   -A 127.0.0.1",
    "fabricd": "-A 127.0.0.1",
    "vrrpd": "  -A 127.0.0.1",
    "pathd": "  -A 127.0.0.1",
}
# A Linux interface name as it may appear in a file name: at most 15 characters, no '/' or space.
_IFNAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.:-]{1,15}$")


@dataclass(frozen=True)
class Gateway:
    """A leaf's address on the cable to it, and the server's interface on that cable."""

    gateway: str
    ifname: str


@dataclass(frozen=True)
class Server:
    """What a server's baseline is made of, from NetBox (atlas.hosts.baseline.inventory)."""

    hostname: str
    addresses: Mapping[str, Sequence[str]]  # per fabric NIC and `lo` (CIDR); never the management NIC
    gateways: Sequence[Gateway]  # the ECMP default route's next hops, one per leaf
    facts: Mapping[str, Any]
    service_addresses: Sequence[str] = ()  # anycast, on SERVICE_INTERFACE; empty: no such interface
    sysctls: Mapping[str, str] = field(default_factory=lambda: dict(SYSCTLS))
    frr_config: str | None = None  # None: the server does not route
    frr_daemons: Sequence[str] = ()  # the routing design's daemons (RoutingDesign.daemons)


@dataclass(frozen=True)
class File:
    path: str
    content: str
    mode: str = "0644"
    owner: str | None = None  # None: root
    group: str | None = None

    def as_variable(self) -> dict[str, str]:
        """As the playbook's atlas_files module takes it."""
        spec = {"path": self.path, "content": self.content, "mode": self.mode}
        return spec | {k: v for k, v in (("owner", self.owner), ("group", self.group)) if v}


def network_file(ifname: str) -> str:
    """The systemd-networkd file of a fabric NIC or lo."""
    if not _IFNAME.fullmatch(ifname):
        raise RenderError(f"{ifname!r} is not an interface name a file can be named after")
    return NIC_NETWORK_FILES.replace("*", ifname)


def owned(path: str) -> bool:
    """Atlas owns the file outright (OWNED): not listed means removed."""
    return any(fnmatchcase(path, pattern) for pattern in OWNED)


def render(server: Server, route_link: str = ROUTE_LINK) -> list[File]:
    """Every file of the server's baseline, in the order the playbook writes them. `route_link`: the
    interface whose networkd file holds the ECMP default route (lo by default: always configured,
    and the route stays one route whichever leaf's link changes)."""
    if server.gateways and route_link not in server.addresses:
        raise RenderError(f"{server.hostname}: the default route's interface {route_link} has no file")
    files = [
        File(HOSTNAME_FILE, f"{server.hostname}\n"),
        File(FACTS_FILE, json.dumps(server.facts, indent=4, sort_keys=True) + "\n"),
        File(SYSCTL_FILE, HEADER + "".join(f"{k} = {v}\n" for k, v in sorted(server.sysctls.items()))),
    ]
    for ifname in sorted(server.addresses, key=lambda i: (i != "lo", i)):
        route = server.gateways if ifname == route_link else ()
        files.append(File(network_file(ifname), _network(ifname, server.addresses[ifname], route)))
    if server.service_addresses:
        files += [
            File(SERVICE_NETDEV_FILE, f"{HEADER}[NetDev]\nName={SERVICE_INTERFACE}\nKind={SERVICE_KIND}\n"),
            File(SERVICE_NETWORK_FILE, _service_network(server.service_addresses)),
        ]
    if server.frr_config is not None:
        files += [
            File(
                NETWORKD_CONF,
                f"{HEADER}[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n",
            ),
            File(FRR_DAEMONS, frr_daemons_file(server.frr_daemons), "0640", "frr", "frr"),
            File(FRR_CONFIG, server.frr_config, "0640", "frr", "frr"),
        ]
    return files


def _network(ifname: str, addresses: Sequence[str], gateways: Sequence[Gateway]) -> str:
    """A fabric NIC's (or lo's) addresses, nothing learnt from the wire; the default route over
    every leaf when `gateways`. networkd holds that route until each gateway's link is configured."""
    lines = [
        HEADER,
        "[Match]",
        f"Name={ifname}",
        "",
        "[Network]",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
    ]
    lines += [f"Address={a}" for a in sorted(addresses) if not (ifname == "lo" and a == KERNEL_LOOPBACK)]
    if gateways:
        lines += ["", "[Route]", "Destination=0.0.0.0/0"]
        lines += [f"MultiPathRoute={g.gateway}@{g.ifname}" for g in sorted(gateways, key=lambda g: g.ifname)]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _service_network(addresses: Sequence[str]) -> str:
    """The service addresses, configured whether the interface is up or not: down is a drain (the
    drop-in SERVICE_DRAINED_DROPIN), which withdraws their announcement and keeps them. Not
    required for the host to be online, since a drained host's interface stays down."""
    lines = [HEADER, "[Match]", f"Name={SERVICE_INTERFACE}", "", "[Link]", "RequiredForOnline=no", ""]
    lines += ["[Network]", "ConfigureWithoutCarrier=yes", "IgnoreCarrierLoss=yes"]
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", *(f"Address={a}" for a in sorted(addresses))]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def frr_daemons_file(daemons: Sequence[str]) -> str:
    """Debian's /etc/frr/daemons with `daemons` on (zebra and staticd run whatever it says); the
    configuration is loaded from frr.conf at start (vtysh_enable)."""
    unknown = sorted(set(daemons) - set(FRR_OPTIONAL_DAEMONS) - set(FRR_ALWAYS_STARTED))
    if unknown:
        raise RenderError(f"FRR has no daemon {', '.join(unknown)}")
    lines = [
        HEADER.rstrip("\n"),
        "# Which daemons Debian's frr.service starts; watchfrr, zebra and staticd always are.",
        *(f"{d}={'yes' if d in daemons else 'no'}" for d in FRR_OPTIONAL_DAEMONS),
        "",
        "vtysh_enable=yes",
        *(f'{d}_options="{options}"' for d, options in FRR_DAEMON_OPTIONS.items()),
    ]
    return "\n".join(lines) + "\n"


def variables(server: Server, route_link: str = ROUTE_LINK) -> dict[str, Any]:
    """The playbook's variables for the server: its files (atlas_files; atlas_files_owned, the
    patterns of those Atlas removes when unlisted; atlas_file_paths, those whose change it applies),
    and the data they come from, which the facts read compares the host's live state with."""
    return {
        "atlas_hostname": server.hostname,
        "atlas_sysctls": dict(server.sysctls),
        "atlas_addresses": {ifname: list(a) for ifname, a in server.addresses.items()},
        "atlas_gateways": [{"gateway": g.gateway, "ifname": g.ifname} for g in server.gateways],
        "atlas_service_addresses": list(server.service_addresses),
        "atlas_frr_config": server.frr_config,  # None: the host does not route
        "atlas_facts": dict(server.facts),
        "atlas_files": [f.as_variable() for f in render(server, route_link)],
        "atlas_files_owned": list(OWNED),
        "atlas_file_paths": dict(APPLIED),
        "atlas_pending_file": PENDING_FILE,
        "atlas_service_interface": SERVICE_INTERFACE,
        "atlas_route_link": route_link,
    }
