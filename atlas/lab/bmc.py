"""A BMC per lab server, on the lab's out-of-band network, answering Redfish as a server's BMC does.

The out-of-band network is a namespace of its own (`<lab>-oob`) joined to this machine by one veth
(`<lab>-oob`, the lab's side: the first address of the OOB prefix); every BMC address NetBox holds
(the OOB IP of each server) sits on the namespace's side. One process of the lab
(`python -m atlas.lab.bmc LAB`) listens on every BMC address, each socket made inside that namespace,
and answers as that server's BMC alone: one ComputerSystem with its power state, its serial number
and NIC MACs from the server's hardware record (atlas.lab.hardware, not NetBox), its disks, a boot
source override (`Hdd`, or the network: `Pxe` and `UefiHttp` both boot as UEFI HTTP boot does, through
the server's firmware, atlas.lab.firmware), boot progress (`BootProgress`: `OSRunning`, or where the
firmware is or stopped, and why, in `OemLastState`), and reset actions whose power really starts and
stops the server's machine (the same power as `atlas lab power`). A server whose disk is blank and
that is not booted from the network halts with "no bootable device". HTTP Basic authentication with
the lab's BMC login (in OpenBao by site for Atlas).

The subset of Redfish served is what Ironic's `sushy` client reads and writes for discovery, power
and provisioning: the service root, Systems, a system's EthernetInterfaces and SimpleStorage, PATCH
of Boot, and ComputerSystem.Reset.
"""

from __future__ import annotations

import base64
import hmac
import json
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS, netns

from atlas.core.model import Site
from atlas.lab import procs
from atlas.lab.config import LabConfig
from atlas.lab.firmware import BLANK, network_boot
from atlas.lab.hardware import Hardware
from atlas.lab.machines import base_rootfs
from atlas.lab.network import OOB_NETWORK

BMC_USER = "admin"
BMC_PORT = 80
MARKER = "atlas.lab.bmc"
NIC = "oob0"  # the namespace's side of the out-of-band network
RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart")
BOOT_TARGETS = ("None", "Hdd", "Pxe", "UefiHttp")
NETWORK_TARGETS = ("Pxe", "UefiHttp")  # both boot as UEFI HTTP boot does (atlas.lab.firmware)
SYSTEM = "/redfish/v1/Systems/1"


class BmcError(RuntimeError):
    pass


def oob_namespace(cfg: LabConfig) -> str:
    return cfg.netns(OOB_NETWORK)


def oob_link(cfg: LabConfig) -> str:
    return f"{cfg.prefix}oob"


def bmc_addresses(sites: list[Site]) -> dict[str, IPv4Interface]:
    """Server -> its BMC's address, for every server NetBox gives an OOB IP."""
    return {
        d.name: d.oob_address
        for s in sites
        for d in s.devices
        if d.role.is_server and d.oob_address is not None
    }


class BmcLab:
    """The lab's out-of-band network and its BMC process: built and started by `lab up`, removed by
    `lab down` (the namespace and link carry the lab's prefix: the fabric's teardown finds them)."""

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.dir / "bmc"
        self.table = self.dir / "bmcs.json"
        self.pidfile = cfg.dir / "run" / "bmc.pid"
        self.log = cfg.dir / "log" / "bmc.log"

    def up(self, sites: list[Site], oob: IPv4Network | None) -> bool:
        """The network and the process as NetBox's servers need them; True when (re)started."""
        if any(d.name == OOB_NETWORK for s in sites for d in s.devices):
            raise BmcError(f"a device is named {OOB_NETWORK!r}: the lab's out-of-band network has that name")
        addresses = bmc_addresses(sites)
        if not addresses or oob is None:
            return self.down()
        outside = [f"{n} ({a})" for n, a in sorted(addresses.items()) if a.ip not in oob]
        if outside:
            raise BmcError(f"BMC addresses outside the OOB prefix {oob}: {', '.join(outside)}")
        rebuilt = self._network(oob, list(addresses.values()))
        table = {str(a.ip): name for name, a in sorted(addresses.items())}
        text = json.dumps({"nodes": table, "prefix": str(oob)}, indent=2, sort_keys=True) + "\n"
        pid = self.pid()
        if pid is not None and not rebuilt and self.table.exists() and self.table.read_text() == text:
            return False
        if pid is not None:
            procs.stop([pid])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.table.write_text(text)
        pid = procs.spawn(
            [sys.executable, "-m", MARKER, self.cfg.name, str(self.cfg.root)],
            self.pidfile,
            self.log,
            env=self.cfg.process_env(),
        )
        first = next(iter(table))
        procs.wait_for(lambda: _answers(first), "the lab's BMCs", 30.0, self.log, pid=pid)
        return True

    def pid(self) -> int | None:
        return procs.running(self.pidfile, MARKER)

    def detail(self) -> str:
        table = json.loads(self.table.read_text())
        return f"{len(table['nodes'])} BMCs on {table['prefix']} (Redfish, port {BMC_PORT})"

    def down(self) -> bool:
        stopped = procs.stop_pidfile(self.pidfile, MARKER)
        self.table.unlink(missing_ok=True)
        return stopped

    def unplug(self, address: IPv4Interface) -> None:
        """The BMC's network cable pulled: its address stops answering (until `plug`)."""
        with NetNS(oob_namespace(self.cfg)) as ns:
            index = ns.link_lookup(ifname=NIC)[0]
            if str(address.ip) in _ipv4(ns, index):
                ns.addr("del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)

    def plug(self, address: IPv4Interface) -> None:
        with NetNS(oob_namespace(self.cfg)) as ns:
            index = ns.link_lookup(ifname=NIC)[0]
            if str(address.ip) not in _ipv4(ns, index):
                ns.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)

    def _network(self, oob: IPv4Network, addresses: list[IPv4Interface]) -> bool:
        """The namespace, link and addresses; True when the namespace was made now (a process
        still listening in an earlier one, removed by a fabric teardown, is deaf)."""
        ns_name, link = oob_namespace(self.cfg), oob_link(self.cfg)
        made = ns_name not in netns.listnetns()
        if made:
            netns.create(ns_name)
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=link):
                ipr.link("add", ifname=link, kind="veth", peer={"ifname": NIC, "net_ns_fd": ns_name})
            index = ipr.link_lookup(ifname=link)[0]
            gateway = next(oob.hosts())
            have = _ipv4(ipr, index)
            if str(gateway) not in have:
                ipr.addr("add", index=index, address=str(gateway), prefixlen=oob.prefixlen)
            ipr.link("set", index=index, state="up")
        with NetNS(ns_name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            index = ns.link_lookup(ifname=NIC)[0]
            have = _ipv4(ns, index)
            wanted = {str(a.ip) for a in addresses}
            for ip in sorted(have - wanted):
                ns.addr("del", index=index, address=ip, prefixlen=oob.prefixlen)
            for ip in sorted(wanted - have):
                ns.addr("add", index=index, address=ip, prefixlen=oob.prefixlen)
            ns.link("set", index=index, state="up")
        return made


def _ipv4(ipr: IPRoute | NetNS, index: int) -> set[str]:
    return {
        str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=socket.AF_INET) if a["index"] == index
    }


def _answers(ip: str) -> bool:
    try:
        with socket.create_connection((ip, BMC_PORT), timeout=1):
            return True
    except OSError:
        return False


# --- the BMC process ----------------------------------------------------------------------------
class Board:
    """One server's BMC: its power (through the lab), its hardware record, its boot override."""

    def __init__(
        self,
        node: str,
        node_dir: Path,
        power: Callable[[str, bool], None],
        is_on: Callable[[], bool],
        netboot: Callable[[str], str],
    ):
        self.node, self.dir = node, node_dir
        self._power, self._is_on, self._netboot = power, is_on, netboot
        self.lock = threading.Lock()
        self.boot_file = node_dir / "bmc-boot.json"
        # the firmware's part: busy between power-on and the OS, halted where it stopped, and why
        self.busy = self.halted = self.cancelled = False
        self.progress = ""

    def boot(self) -> dict[str, str]:
        if self.boot_file.exists():
            return dict(json.loads(self.boot_file.read_text()))
        return {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"}

    def set_boot(self, wanted: dict[str, Any]) -> str | None:
        boot = self.boot()
        target = wanted.get("BootSourceOverrideTarget", boot["BootSourceOverrideTarget"])
        enabled = wanted.get("BootSourceOverrideEnabled", boot["BootSourceOverrideEnabled"])
        if target not in BOOT_TARGETS:
            return f"BootSourceOverrideTarget {target!r} is not one of {', '.join(BOOT_TARGETS)}"
        if enabled not in ("Disabled", "Once", "Continuous"):
            return f"BootSourceOverrideEnabled {enabled!r} is not Disabled, Once or Continuous"
        mode = wanted.get("BootSourceOverrideMode", "UEFI")
        if mode != "UEFI":
            return f"BootSourceOverrideMode {mode!r}: this system boots UEFI only"
        self.boot_file.write_text(
            json.dumps({"BootSourceOverrideEnabled": enabled, "BootSourceOverrideTarget": target}) + "\n"
        )
        return None

    def reset(self, kind: str) -> None:
        with self.lock:
            on = self._is_on()
            if kind in ("ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart"):
                if on:
                    self._power(self.node, False)
                self.halted, on = False, False
                self.cancelled = self.busy  # a network boot under way does not boot what it wrote
            if (kind == "On" and not on and not self.busy) or kind in ("ForceRestart", "GracefulRestart"):
                boot = self.boot()
                if boot["BootSourceOverrideEnabled"] == "Once":  # a one-time override is used up
                    self.boot_file.write_text(
                        json.dumps(
                            {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"}
                        )
                        + "\n"
                    )
                target = (
                    boot["BootSourceOverrideTarget"]
                    if boot["BootSourceOverrideEnabled"] != "Disabled"
                    else "None"
                )
                if self.busy:  # still in its firmware from the last power-on: that boot goes on
                    self.cancelled = False
                elif target in NETWORK_TARGETS:
                    self.busy, self.halted, self.progress = True, False, "network boot: DHCP on the first NIC"
                    threading.Thread(target=self._boot_from_network, daemon=True).start()
                elif (self.dir / BLANK).exists():
                    self.halted, self.progress = (
                        True,
                        "no bootable device: the disk holds no operating system",
                    )
                else:
                    self.halted, self.progress = False, ""
                    self._power(self.node, True)

    def _boot_from_network(self) -> None:
        try:
            url = self._netboot(self.node)
        except Exception as e:  # the firmware stops there, and says why
            with self.lock:
                self.busy, self.halted, self.progress = False, not self.cancelled, f"network boot failed: {e}"
                self.cancelled = False
            return
        with self.lock:
            if self.cancelled:
                self.busy = self.cancelled = False
                self.progress = f"network boot: {url} written to the disk; powered off before booting it"
                return
            self.progress = f"network boot: {url} written to the disk, booting it"
            try:
                self._power(self.node, True)
            except Exception as e:
                self.halted, self.progress = True, f"booting the disk failed: {e}"
            self.busy = False

    def boot_progress(self) -> dict[str, str]:
        if self._is_on() and not self.busy:
            return {"LastState": "OSRunning"}
        if self.progress:
            return {"LastState": "OEM", "OemLastState": self.progress}
        return {"LastState": "None"}

    def system(self) -> dict[str, Any]:
        hw = Hardware.load(self.dir)
        serial = hw.serial if hw is not None else ""
        boot = self.boot()
        return {
            "@odata.id": SYSTEM,
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": "1",
            "Name": self.node,
            "SystemType": "Physical",
            "Manufacturer": "Atlas Lab",
            "Model": "atlas-lab-server",
            "SerialNumber": serial,
            "PowerState": "On"
            if self._is_on() or (self.busy and not self.cancelled) or self.halted
            else "Off",
            "BootProgress": self.boot_progress(),
            "Status": {"State": "Enabled", "Health": "OK"},
            "Boot": {
                "BootSourceOverrideEnabled": boot["BootSourceOverrideEnabled"],
                "BootSourceOverrideTarget": boot["BootSourceOverrideTarget"],
                "BootSourceOverrideTarget@Redfish.AllowableValues": list(BOOT_TARGETS),
                "BootSourceOverrideMode": "UEFI",
            },
            "EthernetInterfaces": {"@odata.id": f"{SYSTEM}/EthernetInterfaces"},
            "SimpleStorage": {"@odata.id": f"{SYSTEM}/SimpleStorage"},
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": f"{SYSTEM}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
                }
            },
        }

    def nics(self) -> dict[str, str]:
        hw = Hardware.load(self.dir)
        return dict(sorted(hw.macs.items())) if hw is not None else {}

    def disks(self) -> list[dict[str, Any]]:
        hw = Hardware.load(self.dir)
        return [
            {"Name": disk, "CapacityBytes": size, "Status": {"State": "Enabled", "Health": "OK"}}
            for disk, size in sorted((hw.disks if hw is not None else {}).items())
        ]


def _collection(path: str, kind: str, members: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": path,
        "@odata.type": f"#{kind}Collection.{kind}Collection",
        "Name": f"{kind} Collection",
        "Members@odata.count": len(members),
        "Members": [{"@odata.id": m} for m in members],
    }


def _resource(board: Board, path: str) -> dict[str, Any] | None:
    path = path.rstrip("/") or "/"
    if path in ("/redfish", "/redfish/v1"):
        return {
            "@odata.id": "/redfish/v1/",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "Name": f"BMC of {board.node}",
            "RedfishVersion": "1.6.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
        }
    if path == "/redfish/v1/Systems":
        return _collection(path, "ComputerSystem", [SYSTEM])
    if path == SYSTEM:
        return board.system()
    nics = board.nics()
    if path == f"{SYSTEM}/EthernetInterfaces":
        return _collection(path, "EthernetInterface", [f"{path}/{n}" for n in nics])
    if path.startswith(f"{SYSTEM}/EthernetInterfaces/"):
        nic = path.rsplit("/", 1)[1]
        if nic not in nics:
            return None
        return {
            "@odata.id": path,
            "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
            "Id": nic,
            "Name": nic,
            "MACAddress": nics[nic],
            "PermanentMACAddress": nics[nic],
            "Status": {"State": "Enabled", "Health": "OK"},
        }
    if path == f"{SYSTEM}/SimpleStorage":
        return _collection(path, "SimpleStorage", [f"{path}/1"])
    if path == f"{SYSTEM}/SimpleStorage/1":
        return {
            "@odata.id": path,
            "@odata.type": "#SimpleStorage.v1_2_0.SimpleStorage",
            "Id": "1",
            "Name": "Disks",
            "Devices": board.disks(),
        }
    return None


def handler_for(boards: dict[str, Board], password: str) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{BMC_USER}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "AtlasLabBMC/1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(
                f"{self.board.node} {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n"
            )

        @property
        def board(self) -> Board:
            return boards[self.connection.getsockname()[0]]

        def _send(self, status: HTTPStatus, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="BMC"')
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("OData-Version", "4.0")
            self.send_header("Connection", "close")  # one request per connection, as many BMCs do
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._send(status, {"error": {"code": "Base.1.8.GeneralError", "message": message}})

        def _authorised(self) -> bool:
            if self.path.rstrip("/") in ("/redfish", "/redfish/v1"):
                return True  # the service root is public, as Redfish has it
            if hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                return True
            self._error(HTTPStatus.UNAUTHORIZED, "authentication required")
            return False

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            data = json.loads(raw or b"{}")
            return data if isinstance(data, dict) else {}

        def do_GET(self) -> None:
            if not self._authorised():
                return
            found = _resource(self.board, self.path.split("?")[0])
            if found is None:
                self._error(HTTPStatus.NOT_FOUND, f"no resource {self.path}")
            else:
                self._send(HTTPStatus.OK, found)

        def do_PATCH(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") != SYSTEM:
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} cannot be changed")
                return
            problem = self.board.set_boot(dict(self._body().get("Boot") or {}))
            if problem:
                self._error(HTTPStatus.BAD_REQUEST, problem)
            else:
                self._send(HTTPStatus.NO_CONTENT)

        def do_POST(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") != f"{SYSTEM}/Actions/ComputerSystem.Reset":
                self._error(HTTPStatus.NOT_FOUND, f"no action {self.path}")
                return
            kind = self._body().get("ResetType")
            if kind not in RESET_TYPES:
                self._error(
                    HTTPStatus.BAD_REQUEST, f"ResetType {kind!r} is not one of {', '.join(RESET_TYPES)}"
                )
                return
            try:
                self.board.reset(str(kind))
            except Exception as e:  # the power did not switch: the caller hears why
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{kind} failed: {e}")
                return
            self._send(HTTPStatus.NO_CONTENT)

    return Handler


def _listen_in(namespace: str, ip: str, port: int) -> socket.socket:
    """A listening socket made inside `namespace` (only this thread enters it, and leaves again)."""
    netns.pushns(namespace)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(64)
        return sock
    finally:
        netns.popns()


def serve(name: str, root: Path) -> None:
    from atlas.lab.lab import Lab  # the power of a server is the lab's, as `atlas lab power` has it

    cfg = LabConfig.load(name, root)
    lab = Lab(cfg)
    bmc = BmcLab(cfg)
    table: dict[str, str] = json.loads(bmc.table.read_text())["nodes"]

    # What powering a server needs of the lab (NetBox's sites, the storage servers' disks attached),
    # read at the first switch and kept: the BMCs serve the servers of the last `lab up`, which
    # restarts them when those change. The reading is one at a time; switches then run side by side.
    reading = threading.Lock()
    known: list[tuple[list[Site], dict[str, dict[str, str]]]] = []

    def power(node: str, on: bool) -> None:
        with reading:
            if not known:
                known.append(lab.sites_and_disks())
        sites, disks = known[0]
        lab.fabric.power(node, on, sites, disks, wait=False)

    def powered_on(node: str) -> Callable[[], bool]:
        return lambda: lab.fabric.machine(node).pid() is not None

    def netboot(node: str) -> str:
        return network_boot(lab.fabric.machine(node), base_rootfs())

    boards = {
        ip: Board(node, lab.fabric.node_dir(node), power, powered_on(node), netboot)
        for ip, node in table.items()
    }
    handler = handler_for(boards, lab.secrets.bmc_password)
    servers = []
    for ip in table:
        server = ThreadingHTTPServer((ip, BMC_PORT), handler, bind_and_activate=False)
        server.socket.close()
        server.socket = _listen_in(oob_namespace(cfg), ip, BMC_PORT)
        server.daemon_threads = True
        servers.append(server)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    sys.stderr.write(f"BMCs of {len(servers)} servers listening\n")
    for t in threads:
        t.join()


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]))
