"""`atlas lab up|down|status`: the whole virtual datacenter, idempotently.

`up` starts only what is not running: on a running lab it changes nothing, and on a half-dead one
(processes ended by a reboot or by CI, namespaces and mounts left behind) it rebuilds what is gone.
The fabric is always built from what NetBox holds after the topology import, never from the files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import pynetbox

from atlas.ceph.cluster import CephError
from atlas.core.model import Device, RackStatus, Role, Site
from atlas.images.catalog import AwsSettings, Catalog
from atlas.lab import procs
from atlas.lab.bmc import BMC_USER, BmcLab
from atlas.lab.ceph import CephLab
from atlas.lab.config import CACHE_ROOT, LAB_DIR_VARIABLE, LabConfig
from atlas.lab.credentials import LabSecrets
from atlas.lab.images import OS_IMAGE_VERSION, build_os
from atlas.lab.netbox import NETBOX_VERSION, NetBoxLab
from atlas.lab.network import Fabric, FabricChanges
from atlas.lab.servers import (
    PREFECT_DB,
    flow_run_env,
    http_ok,
    lab_servers,
    provisioning_server,
    provisioning_url,
)
from atlas.secrets import (
    AWS_PATH,
    NETBOX_PATH,
    PROVISIONING_PATH,
    Vault,
    VaultSettings,
    site_bmc_path,
    site_role_path,
)
from atlas.sot.client import connect
from atlas.sot.loader import LOADER_VERSION, import_topology
from atlas.sot.read import read_prefixes, read_site, site_names
from atlas.sot.schema import CUSTOM_FIELDS, ensure_custom_fields
from atlas.sot.topology import OOB_ROLE, load_topology, topology_paths
from atlas.sot.write import set_disk_paths

Progress = Callable[[str], None]
AWS_REGIONS = ("eu-central-1", "eu-west-1")  # images are registered in the first, copied to the rest


def _quiet(_: str) -> None:
    pass


@dataclass
class ComponentStatus:
    name: str
    healthy: bool
    detail: str


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    imported: dict[str, int] = field(default_factory=dict)
    fabric_rebuilt: bool = False
    fabric: FabricChanges = field(default_factory=FabricChanges)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.started or self.imported or self.fabric_rebuilt)


def osd_hosts(sites: list[Site]) -> list[Device]:
    """Storage servers of active racks: the ones that carry OSDs in a freshly booted lab."""
    active = {(s.name, r.name) for s in sites for r in s.racks if r.status == RackStatus.ACTIVE}
    return [
        d
        for s in sites
        for d in s.devices
        if d.role == Role.STORAGE and d.disks and (s.name, d.rack) in active
    ]


class Lab:
    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.fabric = Fabric(cfg)
        self.ceph = CephLab(cfg, self.fabric)
        self.bmc = BmcLab(cfg)
        self.state_file = self.fabric.state_file

    @property
    def secrets(self) -> LabSecrets:
        return LabSecrets.load_or_create(self.cfg.dir)

    def host_key(self) -> tuple[str, str]:
        """The lab's SSH key for server logins (Ansible); stored in OpenBao for Atlas."""
        key = self.cfg.dir / "keys" / "host_ed25519"
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            procs.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"atlas-lab-{self.cfg.name}",
                    "-f",
                    str(key),
                ],
                "generating the lab's host key",
            )
        return key.read_text(), Path(f"{key}.pub").read_text()

    # --- up -----------------------------------------------------------------------------------
    def snapshot_path(self) -> Path:
        """A dump of NetBox right after importing exactly these topology files with this schema."""
        digest = hashlib.sha256(f"{NETBOX_VERSION}|{CUSTOM_FIELDS}|{LOADER_VERSION}".encode())
        for path in topology_paths(self.cfg.topology):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return CACHE_ROOT / f"netbox-{NETBOX_VERSION}" / "imported" / f"{digest.hexdigest()[:16]}.dump"

    def up(self, progress: Progress = _quiet) -> UpReport:
        t0 = time.monotonic()
        report = UpReport()
        self.cfg.save()
        secrets = self.secrets
        topology = load_topology(self.cfg.topology)  # refuse bad files before starting anything
        netbox = NetBoxLab(self.cfg, secrets)
        servers = lab_servers(self.cfg, secrets)
        # `atlas serve` registers deployments with Prefect: it starts once the others answer
        serving = [s for s in servers if s.name == "serve"]
        servers = [s for s in servers if s.name != "serve"]
        was_healthy = netbox.healthy()
        snapshot = self.snapshot_path()
        progress("PostgreSQL (NetBox's and Prefect's)")
        netbox.start_postgres()
        netbox.ensure_app_database(PREFECT_DB, secrets.prefect_db_password)
        progress("NetBox, OpenBao, moto and Prefect")
        # Each start blocks until its server answers; together they take as long as the slowest.
        with ThreadPoolExecutor(max_workers=1 + len(servers)) as pool:
            netbox_job = pool.submit(netbox.up, snapshot)
            server_jobs = {s.name: pool.submit(s.start, self.cfg) for s in servers}
            how = netbox_job.result()
            report.started += [name for name, job in server_jobs.items() if job.result()]
        report.started += [s.name for s in serving if s.start(self.cfg)]
        if not was_healthy:
            report.started.insert(0, "netbox")
        nb = connect(self.cfg.netbox_url, secrets.netbox_token)
        if how != "snapshot" and not was_healthy:
            progress("importing the topology into NetBox")
            ensure_custom_fields(nb)
            report.imported = import_topology(nb, topology).counts()
            if how == "template":
                netbox.keep_snapshot(snapshot)
        elif how == "snapshot":
            report.imported = {"restored from": 1}
        ensure_custom_fields(nb)  # a lab booted by an older Atlas gains the fields added since
        sites = [read_site(nb, name) for name in site_names(nb)]
        progress("credentials into OpenBao")
        self._seed_vault(sites, secrets)
        # the storage servers' disks first: a server boots with its disks in it
        disk_paths = self.fabric.disks.attach(Fabric.storage_disks(sites))
        progress("fabric: what NetBox holds (namespaces, cables, switches' FRR, servers booting systemd)")
        _, public = self.host_key()
        mgmt = self._mgmt_prefix(nb, sites)
        provisioning = provisioning_server(self.cfg, secrets, mgmt)
        if not self.fabric.bridge_present():  # its DHCP answers on the bridge the fabric builds anew
            provisioning.stop(self.cfg)
        report.fabric = self.fabric.reconcile(
            sites, mgmt, secrets.switch_password, public, disk_paths, progress
        )
        progress("provisioning: DHCP and images for servers booting from the network")
        self.publish_os_image()
        Vault(VaultSettings(url=self.cfg.openbao_url, token=secrets.openbao_root_token)).write(
            PROVISIONING_PATH, {"url": provisioning_url(mgmt)}
        )
        if provisioning.start(self.cfg):
            report.started.append("provisioning")
        report.fabric_rebuilt = report.fabric.changed
        # where each storage server's disks are, as whoever racks a server records it
        set_disk_paths(nb, disk_paths)
        progress("BMCs on the out-of-band network")
        if self.bmc.up(sites, self._oob_prefix(nb)):
            report.started.append("bmc")
        if any(d.role == Role.STORAGE for s in sites for d in s.devices):
            progress("ceph: mon, mgr, OSDs on the active racks' storage servers")
            bridge = next(self._mgmt_prefix(nb, sites).hosts())
            hosts = [h.model_copy(update={"disk_paths": disk_paths[h.name]}) for h in osd_hosts(sites)]
            if self.ceph.up(bridge, hosts):
                report.started.append("ceph")
        else:
            self.ceph.not_needed("NetBox has no storage server")
        self._write_env(secrets)
        report.seconds = time.monotonic() - t0
        return report

    def os_image_host_key(self, version: str) -> Path:
        """The SSH host key an OS image version is built with (kept: the same image every time;
        each version its own, so a server's key tells which build it runs)."""
        key = self.cfg.dir / "keys" / f"os-image-{version}_ed25519"
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            procs.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", version, "-f", str(key)],
                f"generating the host key of OS image {version}",
            )
        return key

    def catalog(self) -> Catalog:
        return Catalog(AwsSettings.from_secret(self.aws_secret(self.secrets)))

    def publish_os_image(self, version: str = OS_IMAGE_VERSION) -> None:
        """An OS image servers boot from the network, in the image catalog as a build pipeline
        would publish it (once: a version is immutable)."""
        catalog = self.catalog()
        if catalog.manifest(version) is not None:
            return
        _, public = self.host_key()
        key = self.os_image_host_key(version)
        artifact = build_os(version, self.cfg.dir / f"{version}.tar.gz", key, public)
        catalog.publish(version, artifact, amis=False, ssh_host_key=Path(f"{key}.pub").read_text())
        artifact.unlink()

    def _mgmt_prefix(self, nb: pynetbox.api, sites: list[Site]) -> IPv4Network:
        prefixes = [p.prefix for p in read_prefixes(nb, "management")]
        mgmt_ips = [d.mgmt_address.ip for s in sites for d in s.devices if d.mgmt_address is not None]
        for p in prefixes:
            if mgmt_ips and all(ip in p for ip in mgmt_ips):
                return p
        raise RuntimeError(
            "NetBox has no prefix with role 'management' holding every management address; "
            f"found: {', '.join(map(str, prefixes)) or 'none'}"
        )

    def _oob_prefix(self, nb: pynetbox.api) -> IPv4Network | None:
        prefixes = read_prefixes(nb, OOB_ROLE)
        return prefixes[0].prefix if prefixes else None

    def _seed_vault(self, sites: list[Site], secrets: LabSecrets) -> None:
        vault = Vault(VaultSettings(url=self.cfg.openbao_url, token=secrets.openbao_root_token))
        private, _ = self.host_key()
        vault.write(NETBOX_PATH, {"url": self.cfg.netbox_url, "token": secrets.netbox_token})
        vault.write(AWS_PATH, self.aws_secret(secrets))
        for site in sites:
            vault.write(site_bmc_path(site.name), {"username": BMC_USER, "password": secrets.bmc_password})
            for role in sorted({d.role for d in site.devices}):
                if role.is_switch:
                    data = {"username": self.cfg.switch_user, "password": secrets.switch_password}
                else:
                    data = {"username": "root", "ssh_private_key": private}
                vault.write(site_role_path(site.name, role.value), data)

    def reset_aws(self) -> None:
        """moto forgets every bucket and image, as a fresh lab has none."""
        if not http_ok(f"{self.cfg.moto_url}/moto-api/reset", method="POST"):
            raise RuntimeError(f"moto at {self.cfg.moto_url} did not reset")

    def aws_secret(self, secrets: LabSecrets) -> dict[str, str]:
        return {
            "endpoint_url": self.cfg.moto_url,
            "bucket": f"{self.cfg.prefix}images",
            "regions": ",".join(AWS_REGIONS),
            "access_key_id": f"{self.cfg.prefix}lab",
            "secret_access_key": secrets.aws_secret_key,
            "snapshot_source": "empty-volume",
        }

    def env(self) -> dict[str, str]:
        return flow_run_env(self.cfg, self.secrets, self.cfg.prefect_url) | {
            "ATLAS_AWS_ENDPOINT": self.cfg.moto_url,
            "ATLAS_LAB": self.cfg.name,
        }

    def _write_env(self, secrets: LabSecrets) -> None:
        path = self.cfg.dir / "lab.env"
        path.write_text("".join(f"export {k}={v}\n" for k, v in self.env().items()))
        path.chmod(0o600)

    def reset(self, progress: Progress = _quiet) -> UpReport:
        """Back to a freshly booted lab: NetBox as imported, switches blank, servers' files as new.
        Keeps PostgreSQL, Redis, OpenBao, moto and Prefect running, so it takes seconds."""
        progress("NetBox database back to the import")
        NetBoxLab(self.cfg, self.secrets).drop_database()
        self.reset_aws()
        progress("fabric back to blank switches and servers, ceph to the active racks' OSDs")
        self.bmc.down()
        provisioning_server(self.cfg, self.secrets, IPv4Network("0.0.0.0/30")).stop(self.cfg)
        shutil.rmtree(self.cfg.dir / "provisioning", ignore_errors=True)
        self.fabric.teardown()
        self.ceph.down()
        self.fabric.disks.remove()
        shutil.rmtree(self.fabric.nodes_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        return self.up(progress)

    # --- status -------------------------------------------------------------------------------
    def nodes_on_record(self) -> list[str]:
        return self.fabric.nodes_on_record()

    # --- power, as at the rack ------------------------------------------------------------------
    def sites_and_disks(self) -> tuple[list[Site], dict[str, dict[str, str]]]:
        nb = connect(self.cfg.netbox_url, self.secrets.netbox_token)
        sites = [read_site(nb, name) for name in site_names(nb)]
        return sites, self.fabric.disks.attach(Fabric.storage_disks(sites))

    def power(self, node: str, on: bool, wait: bool = True) -> bool:
        """Powers a server on (it boots; `wait`: until it answers SSH) or off (a clean shutdown; its
        NICs forget everything). It stays as switched: `lab up` does not power it back on."""
        sites, disks = self.sites_and_disks()
        return self.fabric.power(node, on, sites, disks, wait=wait)

    def wipe(self, node: str) -> None:
        """The server off with a blank disk, as a new server arrives: no operating system on it."""
        sites, _ = self.sites_and_disks()
        self.fabric.wipe(node, sites)

    def reboot(self, node: str) -> None:
        """A power cycle: off, then on; what the server persisted is all it comes back with."""
        sites, disks = self.sites_and_disks()
        self.fabric.reboot(node, sites, disks)

    def status(self) -> list[ComponentStatus]:
        if not (self.cfg.dir / "lab.json").exists():
            return []
        secrets = self.secrets
        netbox = NetBoxLab(self.cfg, secrets)
        rows = [
            ComponentStatus(
                "postgres", netbox.postgres_pid() is not None, f"127.0.0.1:{self.cfg.ports.postgres}"
            ),
            ComponentStatus("netbox", netbox.healthy(), self.cfg.netbox_url),
        ]
        rows += [
            ComponentStatus(
                s.name, s.pid(self.cfg) is not None and s.healthy(), s.health_url.rsplit("/", 1)[0]
            )
            for s in lab_servers(self.cfg, secrets)
        ]
        names = self.nodes_on_record()
        spaces = set(self.fabric.namespaces())
        bad, off = [], []
        for name in names:
            if self.fabric.is_machine(name) and self.fabric.powered_off(name):
                off.append(name)  # switched off at its BMC or by `lab power`: as intended
                continue
            daemons = self.fabric.daemons_on_record(name)
            dead = [d for d, (pf, marker) in daemons.items() if procs.running(pf, marker) is None]
            if self.cfg.netns(name) not in spaces:
                dead.insert(0, "namespace")
            if dead:
                bad.append(f"{name} ({', '.join(dead)})")
        detail = (
            f"{len(names) - len(bad) - len(off)}/{len(names)} nodes up"
            + (f"; powered off: {', '.join(off)}" if off else "")
            + (f"; down: {'; '.join(bad)}" if bad else "")
        )
        rows.append(ComponentStatus("fabric", bool(names) and not bad, detail))
        if self.bmc.table.exists():
            rows.append(ComponentStatus("bmc", self.bmc.pid() is not None, self.bmc.detail()))
        if (self.cfg.dir / "provisioning").exists():
            try:
                url = Vault(VaultSettings(url=self.cfg.openbao_url, token=secrets.openbao_root_token)).read(
                    PROVISIONING_PATH
                )["url"]
            except Exception:
                url = ""
            ok = bool(url) and http_ok(f"{url}/health")
            rows.append(ComponentStatus("provisioning", ok, url or "not recorded in OpenBao"))
        rows.append(self._ceph_status())
        return rows

    def _ceph_status(self) -> ComponentStatus:
        if self.ceph.why_not_needed():
            return ComponentStatus("ceph", True, f"not started: {self.ceph.why_not_needed()}")
        try:
            health, checks = self.ceph.ceph.health()
            osds = self.ceph.ceph.osds()
        except CephError as e:
            return ComponentStatus("ceph", False, str(e).splitlines()[0])
        up = sum(o["up"] for o in osds.values())
        detail = f"{health}, {up}/{len(osds)} OSDs up" + (f"; {'; '.join(checks)}" if checks else "")
        return ComponentStatus("ceph", health == "HEALTH_OK", detail)

    # --- down ---------------------------------------------------------------------------------
    def down(self, progress: Progress = _quiet) -> dict[str, int]:
        progress("BMCs")
        self.bmc.down()
        if (self.cfg.dir / "lab.json").exists():
            progress("provisioning")
            provisioning_server(self.cfg, self.secrets, IPv4Network("0.0.0.0/30")).stop(self.cfg)
        progress("fabric")
        removed = self.fabric.teardown()
        progress("ceph")
        self.ceph.down()
        if (self.cfg.dir / "lab.json").exists():
            secrets = self.secrets
            for server in lab_servers(self.cfg, secrets):
                progress(server.name)
                server.stop(self.cfg)
            progress("NetBox")
            NetBoxLab(self.cfg, secrets).down()
        # whatever a crash or a lost PID file left running, found by the variable every lab process carries
        strays = procs.marked(LAB_DIR_VARIABLE, str(self.cfg.dir))
        procs.stop(strays)
        removed["strays"] = len(strays)
        user = self.cfg.switch_user
        if subprocess.run(["getent", "passwd", user], capture_output=True, check=False).returncode == 0:
            procs.run(["userdel", user], f"removing switch login {user}")
        shutil.rmtree(self.cfg.dir, ignore_errors=True)
        return removed
