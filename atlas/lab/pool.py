"""Atlas as a larger install runs it: a Prefect server on PostgreSQL, the deployments of prefect.yaml
registered for the process work pool `atlas` (`prefect deploy --all`), and workers that each run one
flow at a time, with results on storage every worker reads.

It runs beside the lab's own Prefect and `atlas serve`, on a database and port of its own, so the
two never share a deployment. `atlas lab pool up|down` starts and stops it.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.lab import procs
from atlas.lab.config import PROJECT_ROOT, LabConfig
from atlas.lab.credentials import LabSecrets
from atlas.lab.netbox import NetBoxLab
from atlas.lab.servers import VENV_BIN, Server, flow_run_env, prefect_server

POOL = "atlas"
POOL_DB = "prefectpool"


@dataclass(frozen=True)
class Worker(Server):
    """Healthy once the pool lists it as online."""

    api_url: str = ""

    def healthy(self) -> bool:
        request = urllib.request.Request(
            f"{self.api_url}/work_pools/{POOL}/workers/filter",
            data=b"{}",
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                workers: list[dict[str, Any]] = json.load(response)
        except OSError:
            return False
        return any(w["name"] == self.name and w["status"] == "ONLINE" for w in workers)


class WorkPoolLab:
    def __init__(self, cfg: LabConfig, secrets: LabSecrets, workers: int = 2) -> None:
        self.cfg, self.secrets, self.count = cfg, secrets, workers
        self.url = f"http://127.0.0.1:{cfg.ports.prefect_pool}/api"
        self.results = cfg.dir / "pool-results"

    def worker_env(self) -> dict[str, str]:
        """What every worker and its flow runs see; on several machines, the same from each."""
        return flow_run_env(self.cfg, self.secrets, self.url) | {
            "ATLAS_HOME": str(PROJECT_ROOT),
            # persisted results on a path every worker reads (a shared filesystem or S3 in production)
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.results),
        }

    def server(self) -> Server:
        return prefect_server(self.cfg, self.secrets, "prefect-pool", self.cfg.ports.prefect_pool, POOL_DB)

    def workers(self) -> list[Worker]:
        return [
            Worker(
                name=f"{self.cfg.name}-worker{i}",
                argv=[
                    str(VENV_BIN / "prefect"),
                    "worker",
                    "start",
                    "--pool",
                    POOL,
                    "--type",
                    "process",
                    "--limit",
                    "1",
                    "--name",
                    f"{self.cfg.name}-worker{i}",
                ],
                marker="prefect worker start",
                health_url="",
                env=self.worker_env()
                | {"PREFECT_HOME": str(self.cfg.dir / f"worker{i}"), "PREFECT_WORKER_QUERY_SECONDS": "2"},
                api_url=self.url,
            )
            for i in range(1, self.count + 1)
        ]

    def up(self) -> list[str]:
        """Starts what is not running, registers the deployments; the names of what it started."""
        netbox = NetBoxLab(self.cfg, self.secrets)
        netbox.start_postgres()
        netbox.ensure_app_database(POOL_DB, self.secrets.prefect_db_password)
        started = [self.server().name] if self.server().start(self.cfg) else []
        self._prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        self._prefect("--no-prompt", "deploy", "--all")
        self.results.mkdir(parents=True, exist_ok=True)
        started += [w.name for w in self.workers() if w.start(self.cfg)]
        return started

    def down(self) -> list[str]:
        servers: list[Server] = [*self.workers(), self.server()]
        return [s.name for s in servers if s.stop(self.cfg)]

    def _prefect(self, *argv: str) -> None:
        procs.run(
            [str(VENV_BIN / "prefect"), *argv],
            f"prefect {' '.join(argv[:3])}",
            env=self.worker_env() | {"PREFECT_HOME": str(self.cfg.dir / "pool-cli")},
            cwd=Path(PROJECT_ROOT),
        )
