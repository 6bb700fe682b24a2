"""A small real Ceph (Pacific, Debian's packages) for the lab: no cephadm, containers or systemd.

The mon and mgr run beside the lab's other services and listen on the lab's management bridge, where
every server reaches them. Each OSD runs *on its storage server*: inside that server's namespaces, made
by ceph-volume on one of the server's disks (a loop device: atlas.lab.disks) with the ceph_osd role's
own script, its config in the server's /etc/ceph, talking from the server's management address,
exactly as on a real host. The CRUSH location comes
from NetBox: root default -> datacenter (site) -> rack -> host.

The lab gives OSDs to the storage servers of active racks only; planned racks' storage servers are
enrolled by the ceph-osd-enroll flow. Tunables live in the mon's config database, not in ceph.conf
(ceph.conf overrides it, so a test could not change them at run time).
"""

from __future__ import annotations

import json
import shlex
import shutil
import uuid
from ipaddress import IPv4Address
from pathlib import Path

from atlas.ceph.cluster import Ceph, CephError, osd_host_conf
from atlas.core.model import Device
from atlas.core.run import poll_until
from atlas.lab import procs
from atlas.lab.config import LabConfig
from atlas.lab.network import Fabric

OSD_SCRIPT = (
    Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "ceph_osd" / "files" / "osd-volume.py"
)
RUNTIME_CONFIG = """[global]
osd_pool_default_size = 2
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 16
osd_pool_default_pgp_num = 16
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_delete = true
mgr_stats_period = 1
mon_mgr_digest_period = 1
paxos_propose_interval = 0.1
mon_osd_down_out_interval = 120
osd_recovery_sleep_hdd = 0
osd_recovery_sleep_hybrid = 0
osd_min_pg_log_entries = 5
osd_max_pg_log_entries = 10
osd_pg_log_trim_min = 5
"""
POOL = "atlas"


def poll_osds_up(ceph: Ceph, timeout: float) -> None:
    """Until every OSD of the cluster is up (their servers' units start them as they boot)."""

    def down() -> list[str]:
        try:
            return [f"osd.{i}" for i, o in ceph.osds().items() if not o["up"]]
        except CephError as e:
            return [str(e).splitlines()[0]]

    left = poll_until(down, lambda d: not d, timeout=timeout, pause=2.0)
    if left:
        raise CephError(f"not up {timeout:.0f} s after their servers booted: {', '.join(left)}")


class CephLab:
    def __init__(self, cfg: LabConfig, fabric: Fabric) -> None:
        self.cfg, self.fabric = cfg, fabric
        self.dir = cfg.dir / "ceph"
        self.conf = self.dir / "ceph.conf"
        self.admin_keyring = self.dir / "ceph.client.admin.keyring"

    @property
    def ceph(self) -> Ceph:
        return Ceph(self.conf, timeout=15)

    def _mon_host(self, bridge: IPv4Address) -> str:
        p = self.cfg.ports
        return f"[v2:{bridge}:{p.ceph_mon_v2},v1:{bridge}:{p.ceph_mon_v1}]"

    def _conf(self, fsid: str, bridge: IPv4Address) -> str:
        p = self.cfg.ports
        d = self.dir
        return (
            f"[global]\nfsid = {fsid}\nmon_host = {self._mon_host(bridge)}\n"
            f"public_addr = {bridge}\ncluster_addr = {bridge}\n"
            f"ms_bind_port_min = {p.ceph_bind_min}\nms_bind_port_max = {p.ceph_bind_max}\n"
            "auth_cluster_required = cephx\nauth_service_required = cephx\nauth_client_required = cephx\n"
            f"run_dir = {d}/run\ncrash_dir = {d}/crash\nlog_file = {d}/log/$cluster-$name.log\n"
            f"pid_file = {d}/run/$cluster-$name.pid\nmon_cluster_log_file = {d}/log/$cluster.$channel.log\n"
            f"mon_data = {d}/mon/$cluster-$id\nmgr_data = {d}/mgr/$cluster-$id\n"
            f"\n[client]\nkeyring = {self.admin_keyring}\nadmin_socket =\nlog_file =\n"
            "\n[mon]\nkeyring = $mon_data/keyring\nmgr_initial_modules = iostat\n"
            "mon_data_avail_warn = 2\nmon_data_avail_crit = 1\nauth_allow_insecure_global_id_reclaim = false\n"
            "\n[mgr]\nkeyring = $mgr_data/keyring\n"
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def healthy(self) -> bool:
        """Bootstrapped, its mon and mgr running, every OSD up."""
        if not (self.dir / "bootstrapped").exists() or not self.conf.exists():
            return False
        if not self._daemon_alive("mon.a") or not self._daemon_alive("mgr.x"):
            return False
        try:
            return all(o["up"] for o in self.ceph.osds().values())
        except CephError:
            return False

    def _daemon_alive(self, name: str) -> bool:
        return procs.running(self.dir / "run" / f"ceph-{name}.pid", "ceph-") is not None

    def up(self, bridge: IPv4Address, hosts: list[Device]) -> bool:
        """Boots the cluster, or restarts its mon and mgr (the data survives) and waits for the OSDs
        their servers start; True if anything was started. `hosts`: the storage servers that get the
        first OSDs of a new cluster (those of active racks)."""
        if self.healthy():
            return False
        done = self.dir / "bootstrapped"
        fresh = not done.exists()  # an interrupted bootstrap starts over
        if fresh:
            self._bootstrap(bridge)
        else:
            for name in ("mon.a", "mgr.x"):
                if not self._daemon_alive(name):
                    daemon, ident = name.split(".")
                    self._start(f"ceph-{daemon}", ident)
        procs.wait_for(self._mgr_available, "ceph mgr", timeout=90)
        if fresh:
            # the balancer moves data on its own schedule: weight ramps must be the only movers here
            self.ceph.call("balancer", "off")
            if len(hosts) < 2:  # one OSD host cannot hold two copies (CRUSH puts them on two hosts)
                for option, value in (
                    ("mon_allow_pool_size_one", "true"),
                    ("osd_pool_default_size", "1"),
                    ("mon_warn_on_pool_no_redundancy", "false"),  # chosen here, not a fault
                ):
                    self.ceph.call("config", "set", "global", option, value)
            self.ceph.call("osd", "pool", "create", POOL, "16", "16", "replicated")
            self.ceph.call("osd", "pool", "application", "enable", POOL, "rbd")
            done.touch()
        if fresh:
            # A freshly booted lab's first OSDs, as a cluster's installer makes them; after that the
            # lab never creates one: a server's OSDs live on its disks and its units start them at
            # boot, and new ones come only from ceph-osd-enroll.
            for host in hosts:
                self.zap(host)  # OSDs a server's disks kept from an earlier lab cluster cannot join
                self.create_osd(host)
        else:
            poll_osds_up(self.ceph, timeout=180)
        if hosts:  # without any OSD the PGs cannot become clean
            self.ceph.wait_clean(timeout=180, stable=2)
        return True

    def _mgr_available(self) -> bool:
        try:
            return bool(self.ceph.call("mgr", "stat").get("available"))
        except CephError:
            return False

    def _start(self, daemon: str, ident: str) -> None:
        procs.run(
            [daemon, "-i", ident, "--conf", str(self.conf)], f"starting {daemon}", env=self.cfg.process_env()
        )

    def _bootstrap(self, bridge: IPv4Address) -> None:
        self.down()
        for sub in ("run", "log", "crash", "mon", "mgr"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(self._conf(fsid, bridge))
        mon_keyring = self.dir / "mon.keyring"
        auth = "ceph-authtool"
        procs.run(
            [
                auth,
                "--create-keyring",
                str(mon_keyring),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ],
            "mon key",
        )
        admin_caps = [arg for kind in ("mon", "osd", "mds", "mgr") for arg in ("--cap", kind, "allow *")]
        procs.run(
            [
                auth,
                "--create-keyring",
                str(self.admin_keyring),
                "--gen-key",
                "-n",
                "client.admin",
                *admin_caps,
            ],
            "admin key",
        )
        procs.run([auth, str(mon_keyring), "--import-keyring", str(self.admin_keyring)], "keyring")
        self.admin_keyring.chmod(0o600)
        monmap = self.dir / "monmap"
        procs.run(
            ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", self._mon_host(bridge), str(monmap)],
            "monmap",
        )
        procs.run(
            [
                "ceph-mon",
                "--conf",
                str(self.conf),
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                str(monmap),
                "--keyring",
                str(mon_keyring),
            ],
            "mon mkfs",
        )
        self._start("ceph-mon", "a")
        self.ceph.call("config", "assimilate-conf", "-i", "-", stdin=RUNTIME_CONFIG)
        mgr_dir = self.dir / "mgr" / "ceph-x"
        mgr_dir.mkdir(parents=True, exist_ok=True)
        caps = ["mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"]
        [entity] = self.ceph.call("auth", "get-or-create", "mgr.x", *caps)
        (mgr_dir / "keyring").write_text(f"[{entity['entity']}]\n\tkey = {entity['key']}\n")
        self._start("ceph-mgr", "x")

    # --- OSDs on storage servers ----------------------------------------------------------------
    def _on_host(self, host: Device, script: str, what: str, stdin: str | None = None) -> str:
        argv = [*self.fabric.nsenter(host.name), "sh", "-c", script]
        # the server's own conf, whatever CEPH_CONF the caller has (a flow's points at the lab's)
        env = self.cfg.process_env() | {
            "CEPH_CONF": "/etc/ceph/ceph.conf",
            "CEPH_VOLUME_ALLOW_LOOP_DEVICES": "1",
        }
        return procs.run(argv, f"{what} on {host.name}", env=env, input=stdin).stdout

    def _disks(self, host: Device) -> str:
        return " ".join(shlex.quote(host.disk_paths[d]) for d in host.disks)

    def zap(self, host: Device) -> None:
        """Wipes the host's disks and OSD directories (ceph-volume zap), as a server re-racked in a new
        cluster would be."""
        script = (
            "systemctl stop ceph-osd.target 'ceph-osd@*' 'atlas-osd-*' 2>/dev/null || true; "
            'for d in /var/lib/ceph/osd/ceph-*; do umount "$d" 2>/dev/null || true; done; '
            f"rm -rf /var/lib/ceph/osd /etc/ceph/ceph.conf; for disk in {self._disks(host)}; do "
            'ceph-volume lvm zap "$disk" >/dev/null; done'
        )
        self._on_host(host, script, "wiping the disks of an earlier cluster")

    def create_osd(self, host: Device) -> set[int]:
        """One OSD per disk NetBox lists on `host`, the way the ceph_osd role makes them (the same
        script, the same conf); starts the stopped ones. The ids of the OSDs on its disks."""
        assert host.mgmt_address is not None  # every lab server has one (the topology check)
        conf = osd_host_conf(self.ceph.minimal_conf(), host, str(host.mgmt_address.ip), initial_weight=None)
        self._on_host(host, "mkdir -p /etc/ceph && cat > /etc/ceph/ceph.conf", "ceph.conf", conf)
        keyring = self.ceph.keyring("client.bootstrap-osd")
        write_key = "mkdir -p -m 0700 /var/lib/ceph/bootstrap-osd && umask 077 && cat > /var/lib/ceph/bootstrap-osd/ceph.keyring"
        self._on_host(host, write_key, "bootstrap-osd key", keyring)
        out = self._on_host(host, f"python3 - {self._disks(host)}", "creating OSDs", OSD_SCRIPT.read_text())
        return {int(i) for i in json.loads(out.strip().splitlines()[-1])["osds"].values()}

    def stop_osd(self, host: Device, osd_id: int) -> None:
        """Stops one OSD on its host (its unit), as a failing disk would; it stays down until started."""
        self._on_host(host, f"systemctl stop ceph-osd@{int(osd_id)}", f"stopping osd.{osd_id}")

    def down(self) -> None:
        """OSDs on the servers first (found in the lab's namespaces), then the mgr, the mon, the data."""
        spaces = [Path("/run/netns") / n for n in self.fabric.namespaces()]
        procs.stop([p for p in procs.in_network_namespaces(spaces) if "ceph-osd" in procs.cmdline(p)])
        for name in ("mgr.x", "mon.a"):
            procs.stop_pidfile(self.dir / "run" / f"ceph-{name}.pid", "ceph-")
        shutil.rmtree(self.dir, ignore_errors=True)

    def not_needed(self, why: str) -> None:
        """A lab without storage servers runs no cluster (PGs with no OSD never become clean)."""
        self.down()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "not-needed").write_text(why + "\n")

    def why_not_needed(self) -> str:
        marker = self.dir / "not-needed"
        return marker.read_text().strip() if marker.exists() else ""
