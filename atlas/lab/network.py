"""The lab's fabric, built from NetBox: one node per device, one veth pair per cable.

Every node has its own network namespace. Servers are real machines (atlas.lab.machines): Debian 12
booting systemd inside their namespace, each on its own disk, reached over SSH as Ansible reaches a
production server. Switches and the lab's traffic clients are a network namespace plus a persistent
UTS namespace (their own hostname, which FRR and lldpd take from uname) and mount namespace (a private
/run and /tmp); switches run FRR (zebra, ospfd, bgpd, staticd) and an sshd whose every login lands in that
switch's vtysh, clients an sshd; each runs lldpd on every cabled port. Storage servers get a loop
device per disk NetBox lists (atlas.lab.disks), handed to the machine as its disks.

The fabric follows NetBox as hardware would (`reconcile`): a device added there is built, one removed
is torn down, a cable added or removed is plugged or pulled, and everything else keeps running with
its state. A node whose processes are gone (a reboot of this machine, or CI ending them) comes back as
after a power cycle.

Switches come up with management only: fabric ports are cabled and up, but carry no address and no
routing until a flow configures them.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from atlas.core.model import Cable, Device, Role, Site
from atlas.lab import firmware, procs
from atlas.lab.config import LabConfig
from atlas.lab.disks import LabDisks
from atlas.lab.firmware import BLANK, INSTALLED
from atlas.lab.hardware import Hardware
from atlas.lab.machines import Machine, Provisioning, base_rootfs, raise_inotify_limits, wait_all_booted

FRR_BIN = Path("/usr/lib/frr")
FRR_DAEMONS = ("zebra", "ospfd", "bgpd", "staticd")  # a switch runs the daemons of every design Atlas has
SWITCH_SHELL = Path(__file__).with_name("switch-shell.sh")
CableKey = tuple[str, str, str, str]
OOB_NETWORK = "oob"  # the namespace `<lab>-oob` is the out-of-band network's, not a device's
POWERED_OFF = "powered-off"  # in a server's directory: switched off, stays off until switched on


def _quiet(_: str) -> None:
    pass


class FabricError(RuntimeError):
    pass


def _is_mountpoint(path: Path) -> bool:
    """True for bind mounts too, which os.path.ismount misses (same device as the parent)."""
    target = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mount_point = line.split()[1].encode().decode("unicode_escape")
        if mount_point == target:
            return True
    return False


@dataclass(frozen=True)
class Node:
    device: Device
    mgmt: IPv4Interface

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def is_switch(self) -> bool:
        return self.device.role.is_switch

    @property
    def is_machine(self) -> bool:
        """A server: a real machine booting systemd (switches and clients are namespaces)."""
        return self.device.role.is_server


def cable_key(cable: Cable) -> CableKey:
    return (cable.a.device, cable.a.interface, cable.b.device, cable.b.interface)


@dataclass
class FabricChanges:
    """What a reconcile did: nodes built, removed and brought back (a power cycle), cables changed."""

    built: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    cables: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.built or self.removed or self.restarted or self.cables)


class Fabric:
    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.nodes_dir = cfg.dir / "nodes"
        self.ns_dir = cfg.dir / "ns"
        self.keys_dir = cfg.dir / "keys"
        self.disks = LabDisks(cfg)

    # --- paths --------------------------------------------------------------------------------
    def node_dir(self, node: str) -> Path:
        return self.nodes_dir / node

    def run_dir(self, node: str) -> Path:
        return self.node_dir(node) / "run"

    def frr_dir(self, node: str) -> Path:
        return self.node_dir(node) / "frr"

    def is_machine(self, node: str) -> bool:
        return self.machine(node).upper.exists()

    def nsenter(self, node: str) -> list[str]:
        """A command prefix that runs inside the node, as its root (a server must be powered on)."""
        if self.is_machine(node):
            return self.machine(node).enter()
        return [
            "nsenter",
            f"--net=/run/netns/{self.cfg.netns(node)}",
            f"--mount={self.ns_dir / (node + '.mnt')}",
            f"--uts={self.ns_dir / (node + '.uts')}",
            "--",
        ]

    def vtysh(self, node: str, *commands: str) -> str:
        """Runs vtysh inside a switch as root, for the lab's own checks and tests."""
        argv = [
            *self.nsenter(node),
            "vtysh",
            "--vty_socket",
            str(self.run_dir(node)),
            "--config_dir",
            str(self.frr_dir(node)),
        ]
        for c in commands:
            argv += ["-c", c]
        return procs.run(argv, f"vtysh on {node}", env={"HOME": str(self.node_dir(node))}).stdout

    # --- plan ---------------------------------------------------------------------------------
    @staticmethod
    def nodes(sites: list[Site]) -> list[Node]:
        return [
            Node(device=d, mgmt=d.mgmt_address)
            for s in sites
            for d in s.devices
            if d.mgmt_address is not None
        ]

    @staticmethod
    def cables(sites: list[Site], nodes: list[Node]) -> list[Cable]:
        names = {n.name for n in nodes}
        seen: dict[frozenset[object], Cable] = {}
        for s in sites:
            for c in s.cables:
                if c.a.device in names and c.b.device in names:
                    seen.setdefault(frozenset(c.ends()), c)
        return sorted(seen.values(), key=lambda c: (str(c.a), str(c.b)))

    @staticmethod
    def storage_disks(sites: list[Site]) -> dict[str, list[str]]:
        """The data disks NetBox lists, per storage server: the lab gives each a loop device."""
        return {d.name: list(d.disks) for s in sites for d in s.devices if d.role == Role.STORAGE and d.disks}

    def mgmt_veth(self, node: Node) -> str:
        offset = int(node.mgmt.ip) - int(node.mgmt.network.network_address)
        return f"{self.cfg.prefix}m{offset}"

    # --- build --------------------------------------------------------------------------------
    def check_addresses_free(self, mgmt: IPv4Network) -> None:
        """Refuses to build over another lab (or anything else) using the same management network."""
        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for addr in ipr.get_addr(family=2):
                ifname = names.get(addr["index"], "?")
                net = IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)
                if ifname != self.cfg.bridge and net.overlaps(mgmt):
                    raise FabricError(
                        f"management network {mgmt} overlaps {net} on interface {ifname}, which is not "
                        f"this lab's; is another lab up? (`atlas lab down --name <it>`)"
                    )

    # --- state on record --------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.cfg.dir / "fabric.json"

    def _state(self) -> dict[str, object]:
        if not self.state_file.exists():
            return {}
        return dict(json.loads(self.state_file.read_text()))

    def nodes_on_record(self) -> list[str]:
        return [str(n) for n in self._state().get("nodes", [])]  # type: ignore[attr-defined]

    def _cables_on_record(self) -> set[CableKey]:
        return {tuple(c) for c in self._state().get("cables", [])}  # type: ignore[attr-defined]

    def bridge_present(self) -> bool:
        with IPRoute() as ipr:
            return bool(ipr.link_lookup(ifname=self.cfg.bridge))

    def machine(self, name: str) -> Machine:
        return Machine(self.cfg, name, self.node_dir(name))

    # --- reconcile ----------------------------------------------------------------------------
    def reconcile(
        self,
        sites: list[Site],
        mgmt: IPv4Network,
        switch_password: str,
        host_pubkey: str,
        disks: dict[str, dict[str, str]],
        progress: Callable[[str], None] = _quiet,
    ) -> FabricChanges:
        """Makes the fabric what NetBox holds, touching only what differs: new devices are built,
        removed ones torn down, cables plugged or pulled, dead nodes brought back as after a power
        cycle; the rest keeps running with its state. `disks`: storage server -> disk -> device."""
        changes = FabricChanges()
        nodes = self.nodes(sites)
        cables = self.cables(sites, nodes)
        state = self._state()
        if state.get("mgmt") != str(mgmt) or not self.bridge_present():
            if state or self.namespaces():
                progress("fabric: management network changed or gone, building it anew")
            self.teardown(detach_disks=False)
            self.check_addresses_free(mgmt)
            self._bridge(mgmt)
        self._prepare_host(switch_password)
        self._private_ns_dir()
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        (self.keys_dir / "authorized_keys").write_text(host_pubkey.strip() + "\n")
        wanted = {n.name: n for n in nodes}
        existing = set(self.namespaces())
        for name in sorted(set(self.nodes_on_record()) | {n.removeprefix(self.cfg.prefix) for n in existing}):
            if name not in wanted and name != OOB_NETWORK:  # the BMCs' network (atlas.lab.bmc)
                progress(f"fabric: {name} is gone from NetBox: tearing it down")
                self.remove_node(name)
                changes.removed.append(name)
        new = [n for n in nodes if self.cfg.netns(n.name) not in existing]
        if new:
            progress(f"fabric: building {len(new)} node(s)")
        for node in new:
            self._create_node(node, mgmt)
            changes.built.append(node.name)
        new_names = {n.name for n in new}
        recorded = self._cables_on_record()
        wanted_cables = {cable_key(c): c for c in cables}
        for key in sorted(recorded - set(wanted_cables)):
            if key[0] in wanted and key[2] in wanted:
                self._unplug(key)
                changes.cables += 1
        for key, cable in wanted_cables.items():
            if key not in recorded or {cable.a.device, cable.b.device} & new_names:
                self._cable(cable)
                changes.cables += 1 if key not in recorded else 0
        devices = {n.name: n.device for n in nodes}
        for node in new:
            if node.device.role == Role.CLIENT:
                self._address_client(node, cables, devices)
        ports = self._cabled_ports(cables)
        self._save_state(nodes, cables, mgmt)
        for node in [n for n in nodes if n.is_machine]:  # a server of an older lab, or a new NIC
            before = Hardware.load(self.node_dir(node.name))
            hw = Hardware.of(self.node_dir(node.name), self.cfg.name, node.device)
            if hw != before:
                self._vendor_macs(node.name, hw)
        booting = []
        base = base_rootfs() if any(n.is_machine for n in nodes) else None
        if base is not None:
            raise_inotify_limits()
        for node in nodes:
            if node.is_machine:
                assert base is not None
                started = self._machine_up(node, base, ports.get(node.name, ()), disks.get(node.name, {}))
                if started:
                    booting.append(node)
            else:
                started = self._namespace_node_up(node, ports.get(node.name, ()))
            if started and node.name not in new_names:
                changes.restarted.append(node.name)
        if booting:
            progress(f"fabric: {len(booting)} server(s) booting")
            wait_all_booted([(self.machine(n.name), n.mgmt) for n in booting])
        return changes

    def _save_state(self, nodes: list[Node], cables: list[Cable], mgmt: IPv4Network) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(
            json.dumps(
                {
                    "nodes": [n.name for n in nodes],
                    "cables": [list(cable_key(c)) for c in cables],
                    "mgmt": str(mgmt),
                }
            )
            + "\n"
        )

    @staticmethod
    def _cabled_ports(cables: list[Cable]) -> dict[str, tuple[str, ...]]:
        ports: dict[str, list[str]] = {}
        for c in cables:
            for end in (c.a, c.b):
                ports.setdefault(end.device, []).append(end.interface)
        return {d: tuple(sorted(p)) for d, p in ports.items()}

    def _bridge(self, mgmt: IPv4Network) -> None:
        gateway = next(mgmt.hosts())
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.cfg.bridge, kind="bridge")
            bridge = ipr.link_lookup(ifname=self.cfg.bridge)[0]
            ipr.addr("add", index=bridge, address=str(gateway), prefixlen=mgmt.prefixlen)
            ipr.link("set", index=bridge, state="up")

    def _create_node(self, node: Node, mgmt: IPv4Network) -> None:
        """The node's namespace and management cable; a server's management address is its own
        (systemd-networkd), a switch's and a client's are set here."""
        netns.create(self.cfg.netns(node.name))
        veth = self.mgmt_veth(node)
        with IPRoute() as ipr:
            stale = ipr.link_lookup(ifname=veth)
            if stale:
                ipr.link("del", index=stale[0])
            bridge = ipr.link_lookup(ifname=self.cfg.bridge)[0]
            ipr.link(
                "add",
                ifname=veth,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": self.cfg.netns(node.name)},
            )
            ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], master=bridge, state="up")
        if node.is_machine:
            self._vendor_macs(node.name, Hardware.of(self.node_dir(node.name), self.cfg.name, node.device))
            self.machine(node.name).snapshot_sysctls()
            return
        with NetNS(self.cfg.netns(node.name)) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            eth0 = ns.link_lookup(ifname="eth0")[0]
            ns.addr("add", index=eth0, address=str(node.mgmt.ip), prefixlen=node.mgmt.network.prefixlen)
            ns.link("set", index=eth0, state="up")

    def _machine_up(self, node: Node, base: Path, ports: tuple[str, ...], disks: dict[str, str]) -> bool:
        """Mounts, provisions and powers the server on unless it runs or was powered off (by its
        BMC or `lab power`: it stays off, as a real server does); True when it was started."""
        m = self.machine(node.name)
        running = m.pid() is not None
        if not running and self.powered_off(node.name):
            m.power_off()  # what outlived it goes; its NICs as after a power cut
            return False
        if (m.dir / BLANK).exists():  # nothing on its disk to boot: only its BMC boots it, from the network
            return False
        m.mount(base)
        provisioning = Provisioning(
            hostname=node.name,
            mgmt=node.mgmt,
            authorized_key=(self.keys_dir / "authorized_keys").read_text(),
            ports=ports,
            disks=tuple(disks[d] for d in sorted(disks)),
        )
        # a disk written from a network-booted image holds what its image and installer put there
        ports_changed = False if (m.dir / INSTALLED).exists() else m.provision(provisioning)
        if running:
            if ports_changed:  # a cable plugged or pulled while it runs: its image re-reads its ports
                procs.run(
                    [*m.enter(), "sh", "-c", "networkctl reload; systemctl restart lldpd"],
                    f"re-reading the ports of {node.name}",
                )
            return False
        m.power_off()  # it was off, or died (what outlived it goes): it boots as after a power cycle
        return m.power_on(provisioning.disks)

    def _namespace_node_up(self, node: Node, ports: tuple[str, ...]) -> bool:
        """A switch's or client's namespaces and daemons, started where they are not running; True
        when anything was started."""
        lldpd_changed = self._write_node_files(node, ports)
        if not all(_is_mountpoint(self.ns_dir / f"{node.name}.{k}") for k in ("mnt", "uts")):
            self._enter_node_namespaces(node)
        dead = [
            d
            for d, (pidfile, marker) in self.daemons_on_record(node.name).items()
            if procs.running(pidfile, marker) is None
        ]
        if lldpd_changed and "lldpd" not in dead:
            procs.stop_pidfile(self.run_dir(node.name) / "lldpd.pid", "lldpd")
            dead.append("lldpd")
        if dead:
            self._start_daemons(node, dead)
        return bool(set(dead) - ({"lldpd"} if lldpd_changed else set()))

    def _unplug(self, key: CableKey) -> None:
        with NetNS(self.cfg.netns(key[0])) as ns:
            found = ns.link_lookup(ifname=key[1])
            if found:
                ns.link("del", index=found[0])

    def remove_node(self, name: str) -> None:
        """A device gone from NetBox: its processes, disk, namespaces and directory."""
        m = self.machine(name)
        machine = m.pid()
        if machine is not None:
            procs.stop([machine], grace=5)  # its disk goes with it: no need to wait for a clean shutdown
        pids = procs.in_network_namespaces([Path("/run/netns") / self.cfg.netns(name)])
        procs.stop(pids)
        m.unmount()
        for kind in ("mnt", "uts"):
            f = self.ns_dir / f"{name}.{kind}"
            if _is_mountpoint(f):
                subprocess.run(["umount", str(f)], check=False)
            f.unlink(missing_ok=True)
        if self.cfg.netns(name) in self.namespaces():
            netns.remove(self.cfg.netns(name))
        shutil.rmtree(self.node_dir(name), ignore_errors=True)

    # --- power, for servers: what a tech does at the rack -------------------------------------
    def power(
        self, name: str, on: bool, sites: list[Site], disks: dict[str, dict[str, str]], wait: bool = True
    ) -> bool:
        """Powers a server on or off; True when its state changed. Off: a clean shutdown, then its
        NICs lose everything a power cycle takes."""
        node = next((n for n in self.nodes(sites) if n.name == name), None)
        if node is None or not node.is_machine:
            known = ", ".join(n.name for n in self.nodes(sites) if n.is_machine)
            raise FabricError(f"{name} is not a server of this lab (servers: {known})")
        m = self.machine(name)
        off_file = self.node_dir(name) / POWERED_OFF
        if not on:
            off_file.touch()
            return m.power_off()
        off_file.unlink(missing_ok=True)
        ports = self._cabled_ports(self.cables(sites, self.nodes(sites))).get(name, ())
        raise_inotify_limits()
        started = self._machine_up(node, base_rootfs(), ports, disks.get(name, {}))
        if started and wait:
            wait_all_booted([(m, node.mgmt)])
        return started

    def wipe(self, name: str, sites: list[Site]) -> None:
        """A server with a blank disk (a new or replaced disk): switched off, no operating system;
        only a boot from the network installs one."""
        if name not in {n.name for n in self.nodes(sites) if n.is_machine}:
            raise FabricError(f"{name} is not a server of this lab")
        m = self.machine(name)
        (self.node_dir(name) / POWERED_OFF).touch()
        m.power_off()
        firmware.wipe(m)

    def powered_off(self, name: str) -> bool:
        """Off on purpose (its BMC or `lab power off`): the lab does not power it back on."""
        return (self.node_dir(name) / POWERED_OFF).exists()

    def reboot(self, name: str, sites: list[Site], disks: dict[str, dict[str, str]]) -> None:
        self.power(name, False, sites, disks)
        self.power(name, True, sites, disks)

    def _cable(self, cable: Cable) -> None:
        a_ns, b_ns = self.cfg.netns(cable.a.device), self.cfg.netns(cable.b.device)
        with NetNS(a_ns) as ns:
            ns.link(
                "add",
                ifname=cable.a.interface,
                kind="veth",
                peer={"ifname": cable.b.interface, "net_ns_fd": b_ns},
            )
        for end in cable.ends():  # a server's port has the MAC its vendor gave that NIC
            hw = Hardware.load(self.node_dir(end.device))
            if hw is not None and end.interface in hw.macs:
                self._vendor_macs(end.device, Hardware(hw.serial, {end.interface: hw.macs[end.interface]}))
        for end in cable.ends():
            with NetNS(self.cfg.netns(end.device)) as ns:
                ns.link("set", index=ns.link_lookup(ifname=end.interface)[0], state="up")

    def _vendor_macs(self, node: str, hw: Hardware) -> None:
        """Gives the server's NICs that exist the MACs of its hardware record."""
        with NetNS(self.cfg.netns(node)) as ns:
            for nic, mac in hw.macs.items():
                index = ns.link_lookup(ifname=nic)
                if not index or ns.get_links(index[0])[0].get_attr("IFLA_ADDRESS") == mac:
                    continue
                try:
                    ns.link("set", index=index[0], address=mac)
                except NetlinkError as e:
                    if e.code != errno.EBUSY:
                        raise
                    ns.link("set", index=index[0], state="down")  # a card swapped: it was unplugged
                    ns.link("set", index=index[0], address=mac)
                    ns.link("set", index=index[0], state="up")

    def hardware(self, node: str) -> Hardware:
        hw = Hardware.load(self.node_dir(node))
        if hw is None:
            raise FabricError(f"{node} is not a server of this lab, or was never built")
        return hw

    def swap_nics(self, first: str, second: str, nic: str) -> None:
        """Moves NIC `nic` of two servers into each other (their MACs cross), as a tech who swapped
        the cards would: what each server's BMC reports changes, and so does what DHCP sees."""
        a, b = self.hardware(first), self.hardware(second)
        a.macs[nic], b.macs[nic] = b.macs[nic], a.macs[nic]
        for node, hw in ((first, a), (second, b)):
            hw.save(self.node_dir(node))
            self._vendor_macs(node, Hardware(hw.serial, {nic: hw.macs[nic]}))

    def _address_client(self, node: Node, cables: list[Cable], devices: dict[str, Device]) -> None:
        """A client is the lab's own traffic source, not a device Atlas manages: it gets its addresses
        from NetBox here, and a default route to the router it is cabled to."""
        with NetNS(self.cfg.netns(node.name)) as ns:
            for cable in cables:
                if node.name not in (cable.a.device, cable.b.device):
                    continue
                mine, far = cable.ends_from(node.name)
                iface = node.device.interface(mine.interface)
                router = devices[far.device].interface(far.interface)
                if iface is None or not iface.addresses or router is None or not router.addresses:
                    continue
                index = ns.link_lookup(ifname=mine.interface)[0]
                ns.addr(
                    "add",
                    index=index,
                    address=str(iface.addresses[0].ip),
                    prefixlen=iface.addresses[0].network.prefixlen,
                )
                ns.route("replace", dst="0.0.0.0/0", gateway=str(router.addresses[0].ip))

    def _prepare_host(self, switch_password: str) -> None:
        user = self.cfg.switch_user
        home = self.cfg.dir / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["getent", "passwd", user], capture_output=True, check=False).returncode != 0:
            # frrvty: the vty sockets; frr: writing frr.conf on `write memory`; adm: lldpcli (4750 _lldpd:adm)
            procs.run(
                ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-G", "frrvty,frr,adm", user],
                f"creating switch login {user}",
            )
        # SHA-512 rather than Debian 12's yescrypt, which spends ~50 ms of CPU on every login: a real
        # switch spends that on its own CPU, the lab's switches on the cores everything else shares
        procs.run(
            ["chpasswd", "-c", "SHA512"],
            f"setting the password of {user}",
            input=f"{user}:{switch_password}\n",
        )
        shutil.chown(home, user, user)
        self.install_switch_shell()
        # sshd's compiled-in privilege separation directory, in the root mount namespace too.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def install_switch_shell(self) -> None:
        """Also on every `lab up` of a running lab, so a lab keeps the shell of the code that runs it."""
        shell = self.cfg.dir / "bin" / "switch-shell"
        shell.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SWITCH_SHELL, shell)
        shell.chmod(0o755)

    def _private_ns_dir(self) -> None:
        """Persistent mount namespaces can only be bound on a mount with private propagation."""
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        if not _is_mountpoint(self.ns_dir):
            procs.run(["mount", "--bind", str(self.ns_dir), str(self.ns_dir)], "binding the lab's ns dir")
        procs.run(["mount", "--make-private", str(self.ns_dir)], "making the lab's ns dir private")

    def _write_node_files(self, node: Node, ports: tuple[str, ...]) -> bool:
        """A switch's or client's files; True when lldpd's ports changed (a cable plugged or pulled)."""
        d = self.node_dir(node.name)
        run, log = d / "run", d / "log"
        for p in (run, log):
            p.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {node.name}\n")
        lldpd = d / "lldpd.conf"
        before = lldpd.read_text() if lldpd.exists() else None
        # every cabled port, whatever NetBox names it (a pattern of names would miss the others)
        lldpd.write_text(
            f"configure system hostname {node.name}\n"
            "configure lldp tx-interval 5\n"
            "configure lldp portidsubtype ifname\n"
            f"configure system ip management pattern {node.mgmt.ip}\n"
            + (f"configure system interface pattern {','.join(ports)}\n" if ports else "")
        )
        changed = before is not None and before != lldpd.read_text()
        ssh = d / "ssh"
        ssh.mkdir(exist_ok=True)
        key = ssh / "ssh_host_ed25519_key"
        if not key.exists():
            procs.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh host key")
        common = (
            f"Port 22\nListenAddress {node.mgmt.ip}\nHostKey {key}\nPidFile {run}/sshd.pid\n"
            "UsePAM no\nX11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nPrintLastLog no\nUseDNS no\n"
            "KbdInteractiveAuthentication no\n"
        )
        if node.is_switch:
            frr = self.frr_dir(node.name)
            frr.mkdir(exist_ok=True)
            for p in (run, log, frr):
                shutil.chown(p, "frr", "frr")
            frr.chmod(0o2770)
            conf = frr / "frr.conf"
            if not conf.exists():
                conf.write_text(
                    f"frr defaults traditional\nhostname {node.name}\nservice integrated-vtysh-config\n!\n"
                )
                shutil.chown(conf, "frr", "frr")
                conf.chmod(0o660)
            (frr / "vtysh.conf").write_text("service integrated-vtysh-config\n")
            shutil.chown(frr / "vtysh.conf", "frr", "frr")
            run.chmod(0o755)
            (ssh / "sshd_config").write_text(
                common
                + f"PasswordAuthentication yes\nPermitRootLogin no\nAllowUsers {self.cfg.switch_user}\n"
                + f"ForceCommand {self.cfg.dir / 'bin' / 'switch-shell'} {run} {frr}\n"
            )
        else:
            (ssh / "sshd_config").write_text(
                common
                + "PasswordAuthentication no\nPermitRootLogin prohibit-password\n"
                + f"AuthorizedKeysFile {self.keys_dir / 'authorized_keys'}\n"
                + "Subsystem sftp internal-sftp\n"
            )
        return changed

    def _enter_node_namespaces(self, node: Node) -> None:
        d = self.node_dir(node.name)
        for kind in ("mnt", "uts"):
            (self.ns_dir / f"{node.name}.{kind}").touch()
        lines = [
            "set -e",
            f"hostname {node.name}",
            # sysfs shows the network namespace of whoever mounts it: this node's interfaces
            "mount -t sysfs atlas-sys /sys",
            "mount -t tmpfs -o mode=0755 atlas-run /run",
            "mkdir -p /run/sshd /run/lldpd /run/frr && chown frr:frr /run/frr",
            "mount -t tmpfs -o mode=1777 atlas-tmp /tmp",
        ]
        if node.is_switch:
            lines += [
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
                # ospfd joins OSPF's multicast groups on every port from one socket; Linux allows 20
                # groups per socket, so a spine of a full-size datacenter hears no hellos past swp20
                "sysctl -qw net.ipv4.igmp_max_memberships=512",
                # Flows spread over equal paths by their 5-tuple, hashed with a seed of the switch's
                # own (as switches do): with policy 1 the kernel reuses the sender's socket hash at
                # every hop, so all hops decide alike and some servers never get a flow.
                "sysctl -qw net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x0037",
                f"sysctl -qw net.ipv4.fib_multipath_hash_seed={int(node.mgmt.ip) % 2**31 + 1} || true  # kernel >= 6.11",
            ]
        lines.append(f"mount --bind {d / 'hosts'} /etc/hosts")
        procs.run(
            # unshare binds the new namespaces onto their files from the root mount namespace only if
            # it runs there: `ip netns exec` would hide the binds in a mount namespace of its own.
            [
                "nsenter",
                f"--net=/run/netns/{self.cfg.netns(node.name)}",
                "--",
                "unshare",
                f"--mount={self.ns_dir / (node.name + '.mnt')}",
                f"--uts={self.ns_dir / (node.name + '.uts')}",
                "--propagation",
                "private",
                "sh",
                "-c",
                "\n".join(lines),
            ],
            f"creating the namespaces of {node.name}",
        )

    def _start_daemons(self, node: Node, which: list[str]) -> None:
        """Starts the named daemons of a switch or client (FRR's all together: they share state)."""
        d, run, log = self.node_dir(node.name), self.run_dir(node.name), self.node_dir(node.name) / "log"
        if node.is_switch and set(which) & set(FRR_DAEMONS):
            for daemon in FRR_DAEMONS:
                procs.stop_pidfile(run / f"{daemon}.pid", str(FRR_BIN / daemon), grace=2)
            for daemon in FRR_DAEMONS:
                self._start_frr_daemon(node.name, daemon)
            self._apply_saved_config(node.name)
        if "sshd" in which:
            self.start_sshd(node.name)
        if "lldpd" in which:
            procs.spawn(
                # the default socket, /run/lldpd.socket, is private to the node: plain `lldpcli` works there
                [*self.nsenter(node.name), "/usr/sbin/lldpd", "-d", "-O", str(d / "lldpd.conf")],
                run / "lldpd.pid",
                log / "lldpd.log",
                env=self.cfg.process_env(),
            )

    def _start_frr_daemon(self, node: str, daemon: str) -> None:
        run = self.run_dir(node)
        procs.run(
            [
                *self.nsenter(node),
                str(FRR_BIN / daemon),
                "-d",
                "-F",
                "traditional",
                "-P",
                "0",
                "-i",
                str(run / f"{daemon}.pid"),
                "-z",
                str(run / "zserv.api"),
                "--vty_socket",
                str(run),
                "--log",
                f"file:{self.node_dir(node) / 'log' / daemon}.log",
            ],
            f"starting {daemon} on {node}",
            env=self.cfg.process_env(),
        )

    def _apply_saved_config(self, node: str) -> None:
        procs.run(
            [
                *self.nsenter(node),
                "vtysh",
                "--vty_socket",
                str(self.run_dir(node)),
                "--config_dir",
                str(self.frr_dir(node)),
                "-b",
            ],
            f"applying the saved config of {node}",
            env={"HOME": str(self.node_dir(node))} | self.cfg.process_env(),
        )

    def start_sshd(self, node: str) -> None:
        if self.is_machine(node):
            procs.run([*self.nsenter(node), "systemctl", "start", "ssh"], f"starting sshd on {node}")
            return
        d = self.node_dir(node)
        procs.run(
            [
                *self.nsenter(node),
                "/usr/sbin/sshd",
                "-f",
                str(d / "ssh" / "sshd_config"),
                "-E",
                str(d / "log" / "sshd.log"),
            ],
            f"starting sshd on {node}",
            env=self.cfg.process_env(),
        )

    # --- faults, for tests and drills ---------------------------------------------------------
    def stop_sshd(self, node: str) -> bool:
        """The node's SSH listener goes away, as when a switch's management plane hangs."""
        if self.is_machine(node):
            # sessions keep running, as on a switch (ssh.service is KillMode=process)
            procs.run([*self.nsenter(node), "systemctl", "stop", "ssh"], f"stopping sshd on {node}")
            return True
        return procs.stop_pidfile(self.run_dir(node) / "sshd.pid", "sshd")

    def cut_ssh(self, node: str) -> int:
        """The node's SSH goes away with every open session, as when a host hangs mid-change: its
        listener and each session process in its namespace end. Returns how many sessions ended."""
        self.stop_sshd(node)
        inside = procs.in_network_namespaces([Path("/run/netns") / self.cfg.netns(node)])
        sessions = [pid for pid in inside if procs.cmdline(pid).startswith("sshd")]
        procs.stop(sessions, grace=0)
        return len(sessions)

    def kill_frr_daemon(self, node: str, daemon: str) -> bool:
        """One routing daemon of a switch dies, as on a crash; its peers stay up."""
        return procs.stop_pidfile(self.run_dir(node) / f"{daemon}.pid", str(FRR_BIN / daemon), grace=0)

    def restart_frr_daemon(self, node: str, daemon: str) -> None:
        """What FRR's watchfrr does after a crash: the daemon again, with the saved configuration."""
        self._start_frr_daemon(node, daemon)
        self._apply_saved_config(node)

    def swap_cables(self, first: Cable, second: Cable) -> tuple[Cable, Cable]:
        """Re-plugs two cables crossed (first.a to second.b, second.a to first.b), as a tech who
        swapped two patch cords; returns the cables as they now are, so a second swap undoes it."""
        for cable in (first, second):
            with NetNS(self.cfg.netns(cable.a.device)) as ns:
                ns.link("del", index=ns.link_lookup(ifname=cable.a.interface)[0])
        crossed = (Cable(a=first.a, b=second.b), Cable(a=second.a, b=first.b))
        for cable in crossed:
            self._cable(cable)
        return crossed

    # --- health and teardown ------------------------------------------------------------------
    def daemons_on_record(self, node: str) -> dict[str, tuple[Path, str]]:
        """What must run for a node to be up, by what it is on disk: a server's machine; a switch's
        or client's daemons."""
        if self.is_machine(node):
            return {"machine": (self.machine(node).pidfile, "systemd-nspawn")}
        run = self.run_dir(node)
        files = {"sshd": (run / "sshd.pid", "sshd"), "lldpd": (run / "lldpd.pid", "lldpd")}
        if self.frr_dir(node).exists():
            files |= {d: (run / f"{d}.pid", str(FRR_BIN / d)) for d in FRR_DAEMONS}
        return files

    def namespaces(self) -> list[str]:
        return sorted(n for n in netns.listnetns() if n.startswith(self.cfg.prefix))

    def teardown(self, detach_disks: bool = True) -> dict[str, int]:
        """Removes every process, mount, namespace, link and loop device of this lab, found by its own records
        and its prefix, so a half-dead lab (processes gone, namespaces left) is cleaned as well. The
        servers' disks (overlays) are unmounted, not deleted."""
        pids = []
        machines = []
        if self.nodes_dir.exists():
            for node_dir in self.nodes_dir.iterdir():
                machine = self.machine(node_dir.name).pid()
                if machine is not None:
                    machines.append(machine)
                for pidfile in (node_dir / "run").glob("*.pid"):
                    marker = {"machine": "systemd-nspawn"}.get(pidfile.stem, pidfile.stem)
                    pid = procs.running(pidfile, marker)
                    if pid is not None:
                        pids.append(pid)
                    pidfile.unlink(missing_ok=True)
        # sessions and children that have no PID file live in the lab's namespaces all the same
        spaces = self.namespaces()
        inside = procs.in_network_namespaces([Path("/run/netns") / n for n in spaces])
        # servers shut down cleanly first, all at once (a power cut after a few seconds: teardown is
        # for a lab going away or being built anew, not a reboot, which waits for the shutdown)
        procs.stop(machines, grace=5)
        pids = sorted(set(pids) | set(inside))
        procs.stop(pids)
        disks = self.disks.detach_all() if detach_disks else 0
        mounts = 0
        if self.nodes_dir.exists():
            for node_dir in self.nodes_dir.iterdir():
                mounts += self.machine(node_dir.name).unmount()
        if self.ns_dir.exists():
            for f in self.ns_dir.iterdir():
                if _is_mountpoint(f):
                    subprocess.run(["umount", str(f)], check=False)
                    mounts += 1
            for _ in range(50):  # earlier builds that were interrupted may have bound it again
                if not _is_mountpoint(self.ns_dir):
                    break
                subprocess.run(["umount", str(self.ns_dir)], check=False)
            shutil.rmtree(self.ns_dir, ignore_errors=True)
        for name in spaces:
            netns.remove(name)
        links = 0
        with IPRoute() as ipr:
            for link in ipr.get_links():
                ifname = link.get_attr("IFLA_IFNAME") or ""
                if ifname.startswith(self.cfg.prefix):
                    try:
                        ipr.link("del", index=link["index"])
                        links += 1
                    except NetlinkError as e:
                        if e.code != errno.ENODEV:  # gone with its veth peer meanwhile
                            raise
        return {
            "processes": len(pids),
            "mounts": mounts,
            "namespaces": len(spaces),
            "links": links,
            "disks": disks,
        }
