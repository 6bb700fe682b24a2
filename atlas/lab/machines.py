"""The lab's servers as real machines: Debian 12 booting systemd as PID 1 (systemd-nspawn) inside the
server's network namespace, so that a server runs what a production server runs (journald, sshd,
lldpd, systemd-networkd, Debian's frr.service and ceph-osd@.service) and a reboot is a real one.

One base root filesystem, built once by debootstrap from Debian's packages and cached by the digest of
its package list and set-up; one overlay per server over it, kept across reboots (the server's "disk"),
removed by `lab reset` and `lab down`. What the lab writes into a new server's overlay is what an
installer leaves on a freshly provisioned server: hostname, machine id, SSH host key, the root login's
authorized key, the management address (systemd-networkd), every cabled port up without an address so
its neighbours see it (LLDP), lldpd's settings. Nothing else: the rest is Atlas's to set up.

Power is the nspawn process: on starts it, off stops it (SIGTERM: systemd shuts down cleanly) and then
resets the server's NICs as a power cycle does (addresses, routes, virtual links and per-namespace
sysctls gone; the cables stay plugged in and the ports keep link, on standby power), so only what the
server itself persisted comes back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from atlas.lab import procs
from atlas.lab.config import CACHE_ROOT, LabConfig

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "procps",
    "kmod",
    "openssh-server",
    "python3",
    "lldpd",
    "frr",
    "frr-pythontools",
    "ceph-osd",
    "udev",  # udevadm, which ceph-volume calls (the daemon does not run in a container)
)
# Units a container cannot run or that reach outside the lab; frr stays installed and off until a
# host baseline turns it on, as on a server nobody has set up yet.
MASKED = (
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "nvmf-autoconnect.service",
    "ceph-crash.service",
    "smartmontools.service",
    "e2scrub_reap.service",
    "cron.service",
    "rbdmap.service",
    "console-getty.service",  # the console is read-only: nobody logs in there
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
SETUP = f"""set -e
systemctl enable systemd-networkd ssh lldpd
systemctl disable frr
systemctl mask {" ".join(MASKED)}
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
: > /etc/hostname
mkdir -p /etc/ssh/sshd_config.d /root/.ssh
printf 'PermitRootLogin prohibit-password\\nPasswordAuthentication no\\nUseDNS no\\nPrintMotd no\\nPrintLastLog no\\nX11Forwarding no\\n' > /etc/ssh/sshd_config.d/10-lab.conf
apt-get clean
rm -rf /var/lib/apt/lists/*
"""
MGMT_IFNAME = "eth0"
BOOT_TIMEOUT = 120.0
SHUTDOWN_GRACE = 20.0
# Per-namespace kernel parameters a power cycle returns to their defaults (the NICs' own go with
# their addresses); a snapshot of a new namespace's values, taken when its server is first built.
SYSCTL_ROOTS = ("/proc/sys/net/ipv4", "/proc/sys/net/ipv6/conf/all", "/proc/sys/net/ipv6/conf/default")


class MachineError(RuntimeError):
    pass


# Every server's systemd and its services watch files with inotify, all as this machine's root: the
# kernel's default of 128 instances per user runs out at a handful of servers ("Too many open files")
INOTIFY_LIMITS = {"fs.inotify.max_user_instances": 65536, "fs.inotify.max_user_watches": 4194304}


def raise_inotify_limits() -> None:
    """Raises this machine's inotify limits to what many servers on it need, never lowering them."""
    for key, wanted in INOTIFY_LIMITS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if int(path.read_text()) < wanted:
            path.write_text(f"{wanted}\n")


def base_digest() -> str:
    return hashlib.sha256(f"{SUITE}|{MIRROR}|{PACKAGES}|{SETUP}".encode()).hexdigest()[:16]


def base_rootfs(progress: object = None) -> Path:
    """The cached base root filesystem, built now if missing (one builder at a time, any lab)."""
    cache = CACHE_ROOT / "rootfs"
    path = cache / f"{SUITE}-{base_digest()}"
    if (path / ".complete").exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").exists():
            return path
        work = cache / f".build-{path.name}"
        shutil.rmtree(work, ignore_errors=True)
        procs.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(work),
                MIRROR,
            ],
            "building the servers' Debian root filesystem (debootstrap)",
            timeout=1800,
        )
        procs.run(["chroot", str(work), "sh", "-c", SETUP], "setting up the servers' root filesystem")
        shutil.rmtree(path, ignore_errors=True)
        work.rename(path)
        (path / ".complete").touch()
        mounts = Path("/proc/self/mounts").read_text()
        for old in cache.glob(f"{SUITE}-*"):  # earlier package lists no running server stands on
            if old != path and f"lowerdir={old}," not in mounts:
                shutil.rmtree(old, ignore_errors=True)
    return path


def _is_mountpoint(path: Path) -> bool:
    target = str(path.resolve())
    return any(line.split()[1] == target for line in Path("/proc/self/mounts").read_text().splitlines())


@dataclass(frozen=True)
class Provisioning:
    """What an installer leaves on a new server: its name, management address, login key, and which
    of its ports are cabled (lldpd speaks on those, whatever they are named)."""

    hostname: str
    mgmt: IPv4Interface
    authorized_key: str
    ports: tuple[str, ...]
    disks: tuple[str, ...] = ()  # block devices of its data disks (/dev/loopN in the lab)


class Machine:
    """One server: its overlay, its nspawn process (power), its NICs' reset."""

    def __init__(self, cfg: LabConfig, name: str, node_dir: Path) -> None:
        self.cfg, self.name, self.dir = cfg, name, node_dir
        self.root = node_dir / "root"
        self.upper, self.work = node_dir / "disk", node_dir / ".disk-work"
        self.pidfile = node_dir / "run" / "machine.pid"
        self.console = node_dir / "log" / "console.log"
        self.netns = cfg.netns(name)

    # --- the server's disk ----------------------------------------------------------------------
    def mount(self, base: Path) -> None:
        if _is_mountpoint(self.root):
            return
        for d in (self.root, self.upper, self.work):
            d.mkdir(parents=True, exist_ok=True)
        procs.run(
            [
                "mount",
                "-t",
                "overlay",
                f"{self.cfg.prefix}{self.name}",
                "-o",
                f"lowerdir={base},upperdir={self.upper},workdir={self.work}",
                str(self.root),
            ],
            f"mounting the disk of {self.name}",
        )

    def unmount(self) -> bool:
        if not _is_mountpoint(self.root):
            return False
        subprocess.run(["umount", str(self.root)], check=False)
        if _is_mountpoint(self.root):
            subprocess.run(["umount", "-l", str(self.root)], check=False)
        return True

    def _install(self, p: Provisioning) -> None:
        r = self.root
        machine_id = r / "etc" / "machine-id"
        machine_id.write_text(uuid.uuid4().hex + "\n")
        (r / "etc" / "hostname").write_text(p.hostname + "\n")
        (r / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {p.hostname}\n")
        key = r / "etc" / "ssh" / "ssh_host_ed25519_key"
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        procs.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", p.hostname, "-f", str(key)],
            f"SSH host key of {p.hostname}",
        )
        ssh = r / "root" / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(p.authorized_key.strip() + "\n")
        (ssh / "authorized_keys").chmod(0o600)
        network = r / "etc" / "systemd" / "network"
        network.mkdir(parents=True, exist_ok=True)
        (network / "10-provisioned-mgmt.network").write_text(
            f"[Match]\nName={MGMT_IFNAME}\n\n[Network]\nAddress={p.mgmt}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )

    def provision(self, p: Provisioning) -> bool:
        """Writes the installer's files: once on a new disk its identity (hostname, machine id, SSH
        host key, the root login's key, the management address), and every time the ports it is
        cabled on (a cable plugged or pulled); True when those ports changed since the last time."""
        r = self.root
        ports_file = r / "etc" / "systemd" / "network" / "99-provisioned-ports.network"
        before = ports_file.read_text() if ports_file.exists() else ""
        marker = self.dir / "provisioned"
        if not marker.exists():
            self._install(p)
            marker.write_text(f"{p.hostname}\n")
        network = r / "etc" / "systemd" / "network"
        if p.ports:
            # the ports up, with no address: what a server's image does so that its switches see it
            (network / "99-provisioned-ports.network").write_text(
                f"[Match]\nName={' '.join(p.ports)}\n\n[Link]\nRequiredForOnline=no\n\n"
                "[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
            )
        else:
            (network / "99-provisioned-ports.network").unlink(missing_ok=True)
        lldpd = r / "etc" / "lldpd.d"
        lldpd.mkdir(parents=True, exist_ok=True)
        (lldpd / "10-provisioned.conf").write_text(
            "configure lldp tx-interval 5\n"
            "configure lldp portidsubtype ifname\n"
            f"configure system ip management pattern {p.mgmt.ip}\n"
            + (f"configure system interface pattern {','.join(p.ports)}\n" if p.ports else "")
        )
        after = ports_file.read_text() if ports_file.exists() else ""
        return before != after

    # --- power ----------------------------------------------------------------------------------
    def pid(self) -> int | None:
        return procs.running(self.pidfile, "systemd-nspawn")

    def init_pid(self) -> int | None:
        """The server's PID 1, as this machine sees it."""
        pid = self.pid()
        if pid is None:
            return None
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return int(children[0]) if children else None
        return None

    def enter(self) -> list[str]:
        """A command prefix that runs inside the running server, as its root."""
        pid = self.init_pid()
        if pid is None:
            raise MachineError(f"{self.name} is powered off")
        return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]

    def power_on(self, disks: tuple[str, ...] = ()) -> bool:
        """Boots the server unless it runs; True when it was started now. Does not wait."""
        if self.pid() is not None:
            return False
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.root}",
            f"--network-namespace-path=/run/netns/{self.netns}",
            # networkd, FRR and lldpd configure the server's own network namespace
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
            "--boot",
            f"--machine={self.netns}",
            "--register=no",
            "--keep-unit",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=read-only",
            *(f"--bind={d}" for d in disks),
        ]
        # /proc/sys/net writable: systemd-sysctl and the playbooks set the server's network sysctls
        env = self.cfg.process_env() | {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
        procs.spawn(argv, self.pidfile, self.console, env=env)
        return True

    def wait_booted(self, mgmt: IPv4Interface, timeout: float = BOOT_TIMEOUT) -> None:
        """Until the server answers SSH on its management address (systemd got that far)."""

        def answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((str(mgmt.ip), 22), timeout=1):
                return True
            return False

        procs.wait_for(answers, f"server {self.name}", timeout, self.console, pid=self.pid())

    def power_off(self) -> bool:
        """Stops the server (a clean shutdown, then the switch), then resets its NICs."""
        pid = self.pid()
        if pid is not None:
            procs.stop([pid], grace=SHUTDOWN_GRACE)
        self.pidfile.unlink(missing_ok=True)
        # whatever outlived its PID 1 (it cannot, in its own PID namespace; a stray of an older lab can)
        procs.stop(procs.in_network_namespaces([Path("/run/netns") / self.netns]), grace=2)
        self.reset_nics()
        return pid is not None

    def reset_nics(self) -> None:
        """What a power cycle does to a server's network: no address, route or virtual link left,
        network sysctls back to their defaults. The ports keep their link, as a server's NICs on
        standby power do (for its BMC and wake-on-LAN): the switch sees the server go silent (its
        routing adjacency times out), not its port flap. (A flapping port also trips FRR 8.4's
        zebra on the leaves, which then keeps a stale kernel nexthop group for the server's
        routes.)"""
        # imported here: pyroute2 costs ~0.4 s of CPU to import, and a server's network-boot
        # firmware (atlas.lab.firmware, a process of its own per boot) needs only the constants
        from pyroute2 import NetNS

        with NetNS(self.netns) as ns:
            for link in ns.get_links():
                name = link.get_attr("IFLA_IFNAME")
                info = link.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                if name == "lo":
                    ns.flush_addr(index=link["index"])
                    ns.link("set", index=link["index"], state="down")
                elif kind == "veth":
                    ns.flush_addr(index=link["index"])
                else:
                    with contextlib.suppress(Exception):
                        ns.link("del", index=link["index"])
            for table in (254, 255):
                with contextlib.suppress(Exception):
                    ns.flush_routes(table=table)
        self._restore_sysctls()

    # --- per-namespace sysctls ------------------------------------------------------------------
    @property
    def _sysctl_file(self) -> Path:
        return self.dir / "sysctl-defaults.json"

    def _sysctl_files(self) -> Iterator[tuple[str, str]]:
        enter = ["nsenter", f"--net=/run/netns/{self.netns}", "--"]
        script = (
            "import os,sys,json\nout={}\nfor r in sys.argv[1:]:\n for n in sorted(os.listdir(r)):\n"
            "  p=os.path.join(r,n)\n  if os.path.isfile(p) and os.access(p,os.W_OK):\n"
            "   try: out[p]=open(p).read()\n   except OSError: pass\nprint(json.dumps(out))\n"
        )
        # sysfs and /proc/sys/net show the namespace of the reader: read from inside it
        out = procs.run([*enter, "python3", "-c", script, *SYSCTL_ROOTS], f"sysctls of {self.name}").stdout
        yield from json.loads(out).items()

    def snapshot_sysctls(self) -> None:
        if not self._sysctl_file.exists():
            self._sysctl_file.parent.mkdir(parents=True, exist_ok=True)
            self._sysctl_file.write_text(json.dumps(dict(self._sysctl_files())))

    def _restore_sysctls(self) -> None:
        if not self._sysctl_file.exists():
            return
        defaults: dict[str, str] = json.loads(self._sysctl_file.read_text())
        changed = {p: v for p, v in self._sysctl_files() if defaults.get(p, v) != v}
        if not changed:
            return
        script = "import sys,json\nfor p,v in json.load(sys.stdin).items():\n try: open(p,'w').write(v)\n except OSError: pass\n"
        procs.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", "--", "python3", "-c", script],
            f"resetting the sysctls of {self.name}",
            input=json.dumps({p: defaults[p] for p in changed}),
        )


def wait_all_booted(machines: list[tuple[Machine, IPv4Interface]], timeout: float | None = None) -> None:
    """Until every server answers SSH; names every one that did not. Booting at once, they share the
    machine's cores: the default timeout grows with their number."""
    deadline = time.monotonic() + (timeout if timeout is not None else BOOT_TIMEOUT + 0.5 * len(machines))
    late = []
    for machine, mgmt in machines:
        try:
            machine.wait_booted(mgmt, max(1.0, deadline - time.monotonic()))
        except procs.StartError as e:
            late.append(str(e).splitlines()[0])
    if late:
        raise MachineError("servers did not boot: " + "; ".join(late))
