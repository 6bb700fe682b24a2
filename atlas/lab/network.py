"""The lab's fabric, built from NetBox: one node per device, one veth pair per cable.

Each node is a network namespace plus a persistent UTS namespace (its own hostname, which FRR and
lldpd take from uname) and a persistent mount namespace: a private /run and /tmp, and on servers
overlays over /etc, /var, /root and /opt, so what a playbook changes on one server is seen by that
server alone. Switches run FRR (zebra, ospfd, staticd) and an sshd whose every login lands in that
switch's vtysh; servers run an sshd for Ansible and Debian's supervisord with its own configuration
(/etc/supervisor in the server's overlay), which runs the services of the server's image; every node
runs lldpd. Storage servers get a loop device per disk NetBox lists (atlas.lab.disks, attached by
`lab up`, which records their paths in NetBox; a node whose disks are gone is not healthy).

Switches come up with management only: fabric ports are cabled and up, but carry no address and no
routing until a flow configures them.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from atlas.core.model import Cable, Device, Role, Site
from atlas.lab import procs
from atlas.lab.config import LabConfig
from atlas.lab.disks import LabDisks

FRR_BIN = Path("/usr/lib/frr")
FRR_DAEMONS = ("zebra", "ospfd", "staticd")
SWITCH_SHELL = Path(__file__).with_name("switch-shell.sh")
# What each server sees at these places: the machine's files under its own changes. Its root home
# starts as a new account's does (Debian's skeleton), not as this machine's: bash reads it on every
# SSH command, and a shell setup in this machine's /root made each command cost 0.1 s.
SERVER_OVERLAYS = {"etc": "/etc", "var": "/var", "root": "/etc/skel", "opt": "/opt"}


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


@dataclass(frozen=True)
class NodeHealth:
    name: str
    namespace: bool
    daemons: dict[str, bool]

    @property
    def ok(self) -> bool:
        return self.namespace and all(self.daemons.values())


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

    def nsenter(self, node: str) -> list[str]:
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

    def build(self, sites: list[Site], mgmt: IPv4Network, switch_password: str, host_pubkey: str) -> None:
        nodes = self.nodes(sites)
        self.check_addresses_free(mgmt)
        self._prepare_host(switch_password)
        self._private_ns_dir()
        gateway = next(mgmt.hosts())
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.cfg.bridge, kind="bridge")
            bridge = ipr.link_lookup(ifname=self.cfg.bridge)[0]
            ipr.addr("add", index=bridge, address=str(gateway), prefixlen=mgmt.prefixlen)
            ipr.link("set", index=bridge, state="up")
            for node in nodes:
                netns.create(self.cfg.netns(node.name))
                veth = self.mgmt_veth(node)
                ipr.link(
                    "add",
                    ifname=veth,
                    kind="veth",
                    peer={"ifname": "eth0", "net_ns_fd": self.cfg.netns(node.name)},
                )
                ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], master=bridge, state="up")
        for node in nodes:
            with NetNS(self.cfg.netns(node.name)) as ns:
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
                eth0 = ns.link_lookup(ifname="eth0")[0]
                ns.addr("add", index=eth0, address=str(node.mgmt.ip), prefixlen=node.mgmt.network.prefixlen)
                ns.link("set", index=eth0, state="up")
        cables = self.cables(sites, nodes)
        for cable in cables:
            self._cable(cable)
        for node in nodes:
            if node.device.role == Role.CLIENT:
                self._address_client(node, cables, {n.name: n.device for n in nodes})
        (self.keys_dir).mkdir(parents=True, exist_ok=True)
        (self.keys_dir / "authorized_keys").write_text(host_pubkey.strip() + "\n")
        for node in nodes:
            self._write_node_files(node)
            self._enter_node_namespaces(node)
        for node in nodes:
            self._start_daemons(node)

    def _cable(self, cable: Cable) -> None:
        a_ns, b_ns = self.cfg.netns(cable.a.device), self.cfg.netns(cable.b.device)
        with NetNS(a_ns) as ns:
            ns.link(
                "add",
                ifname=cable.a.interface,
                kind="veth",
                peer={"ifname": cable.b.interface, "net_ns_fd": b_ns},
            )
            ns.link("set", index=ns.link_lookup(ifname=cable.a.interface)[0], state="up")
        with NetNS(b_ns) as ns:
            ns.link("set", index=ns.link_lookup(ifname=cable.b.interface)[0], state="up")

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

    def _write_node_files(self, node: Node) -> None:
        d = self.node_dir(node.name)
        run, log = d / "run", d / "log"
        for p in (run, log):
            p.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {node.name}\n")
        ports = "swp*" if node.is_switch else "eth*,!eth0"
        (d / "lldpd.conf").write_text(
            f"configure system hostname {node.name}\n"
            "configure lldp tx-interval 5\n"
            "configure lldp portidsubtype ifname\n"
            f"configure system ip management pattern {node.mgmt.ip}\n"
            f"configure system interface pattern {ports}\n"
        )
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
                f"mount --bind {d / 'hosts'} /etc/hosts",
            ]
        else:
            for top, lower in SERVER_OVERLAYS.items():
                upper, work = d / "fs" / top, d / "fs" / f".work-{top}"
                upper.mkdir(parents=True, exist_ok=True)
                work.mkdir(parents=True, exist_ok=True)
                lines.append(
                    f"mount -t overlay atlas-{top} -o lowerdir={lower},upperdir={upper},workdir={work} /{top}"
                )
            lines += [f"cp {d / 'hosts'} /etc/hosts", f"echo {node.name} > /etc/hostname"]
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

    def _start_daemons(self, node: Node) -> None:
        d, run, log = self.node_dir(node.name), self.run_dir(node.name), self.node_dir(node.name) / "log"
        enter = self.nsenter(node.name)
        if node.is_switch:
            for daemon in FRR_DAEMONS:
                self._start_frr_daemon(node.name, daemon)
            self._apply_saved_config(node.name)
        else:
            procs.run(
                # Debian's configuration: socket and includes resolve inside the server's own /run and /etc
                [
                    *enter,
                    "/usr/bin/supervisord",
                    "-c",
                    "/etc/supervisor/supervisord.conf",
                    "-j",
                    str(run / "supervisord.pid"),
                    "-l",
                    str(log / "supervisord.log"),
                ],
                f"starting supervisord on {node.name}",
                env=self.cfg.process_env(),
            )
        self.start_sshd(node.name)
        procs.spawn(
            # the default socket, /run/lldpd.socket, is private to the node: plain `lldpcli` works there
            [*enter, "/usr/sbin/lldpd", "-d", "-O", str(d / "lldpd.conf")],
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
    def daemon_pidfiles(self, node: str, is_switch: bool) -> dict[str, tuple[Path, str]]:
        run = self.run_dir(node)
        files = {"sshd": (run / "sshd.pid", "sshd"), "lldpd": (run / "lldpd.pid", "lldpd")}
        if is_switch:
            files |= {d: (run / f"{d}.pid", str(FRR_BIN / d)) for d in FRR_DAEMONS}
        else:
            files["supervisord"] = (run / "supervisord.pid", "supervisord")
        return files

    def namespaces(self) -> list[str]:
        return sorted(n for n in netns.listnetns() if n.startswith(self.cfg.prefix))

    def health(self, sites: list[Site]) -> list[NodeHealth]:
        existing = set(self.namespaces())
        attached = self.disks.attached()
        disks = self.storage_disks(sites)
        return [
            NodeHealth(
                name=n.name,
                namespace=self.cfg.netns(n.name) in existing,
                daemons={
                    daemon: procs.running(pidfile, marker) is not None
                    for daemon, (pidfile, marker) in self.daemon_pidfiles(n.name, n.is_switch).items()
                }
                | (
                    {"disks": all(str(self.disks.backing_file(n.name, d)) in attached for d in disks[n.name])}
                    if n.name in disks
                    else {}
                ),
            )
            for n in self.nodes(sites)
        ]

    def teardown(self) -> dict[str, int]:
        """Removes every process, mount, namespace, link and loop device of this lab, found by its own records
        and its prefix, so a half-dead lab (processes gone, namespaces left) is cleaned as well."""
        pids = []
        if self.nodes_dir.exists():
            for node_dir in self.nodes_dir.iterdir():
                for pidfile in (node_dir / "run").glob("*.pid"):
                    marker = "lldpd" if pidfile.stem == "lldpd" else pidfile.stem
                    pid = procs.running(pidfile, marker)
                    if pid is not None:
                        pids.append(pid)
                    pidfile.unlink(missing_ok=True)
        # sessions and children that have no PID file live in the lab's namespaces all the same
        spaces = self.namespaces()
        inside = procs.in_network_namespaces([Path("/run/netns") / n for n in spaces])
        pids = sorted(set(pids) | set(inside))
        procs.stop(pids)
        disks = self.disks.detach_all()
        mounts = 0
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
