"""Where a lab lives and which ports it uses.

Every resource of a lab carries its name: namespaces `<name>-<device>`, links `<name>-…`, the
directory `<root>/<name>`. Names are short and dash-free so that one lab's prefix is never the start
of another's (`atlas-` never matches a namespace of lab `atlas2`) and link names stay within Linux's
15 characters.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
DEFAULT_ROOT = Path(os.environ.get("ATLAS_LAB_ROOT", "/srv/atlas-lab"))
CACHE_ROOT = Path(os.environ.get("ATLAS_CACHE", "/var/cache/atlas"))
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = PROJECT_ROOT / "inventory" / "lab"


LAB_DIR_VARIABLE = "ATLAS_LAB_DIR"


class LabConfigError(ValueError):
    pass


def ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


SPAN = 50  # ports from the base a lab uses: labs side by side need bases this far apart


@dataclass(frozen=True)
class Ports:
    netbox: int
    postgres: int
    redis: int
    openbao: int
    moto: int
    prefect: int
    prefect_pool: int  # the work-pool install beside the lab's own Prefect (atlas.lab.pool)
    ceph_mon_v1: int
    ceph_mon_v2: int
    ceph_bind_min: int  # the mgr's and OSDs' ports (an OSD takes several)
    ceph_bind_max: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        # OpenBao's dev server also listens on its port + 1 (cluster traffic): base + 7 is taken too.
        return cls(
            netbox=base,
            postgres=base + 1,
            redis=base + 2,
            openbao=base + 6,
            moto=base + 3,
            prefect=base + 4,
            prefect_pool=base + 5,
            ceph_mon_v1=base + 8,
            ceph_mon_v2=base + 9,
            ceph_bind_min=base + 10,
            ceph_bind_max=base + SPAN - 1,
        )


@dataclass(frozen=True)
class LabConfig:
    name: str = "atlas"
    port_base: int = 28000
    topology: Path = DEFAULT_TOPOLOGY
    root: Path = DEFAULT_ROOT
    # Scheduled deployments (the config sweep) run on their own; a test lab keeps them paused so
    # nothing touches its devices or NetBox behind the tests' backs.
    schedules: bool = True

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise LabConfigError(
                f"lab name {self.name!r} must be 1-8 lowercase letters or digits, starting with a letter"
            )
        low, high = ephemeral_ports()
        if not 1024 < self.port_base < 65000 or (low <= self.port_base + SPAN and self.port_base <= high):
            # a listener there can find its port taken by some client's outgoing connection
            raise LabConfigError(
                f"port base {self.port_base}: the lab needs {SPAN} ports from 1025 up, outside the kernel's "
                f"ephemeral range {low}-{high}"
            )

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def ports(self) -> Ports:
        return Ports.from_base(self.port_base)

    @property
    def prefix(self) -> str:
        """Prefix of every namespace and root-namespace link of this lab."""
        return f"{self.name}-"

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    def netns(self, device: str) -> str:
        return f"{self.prefix}{device}"

    @property
    def switch_user(self) -> str:
        return f"{self.name}ops"

    @property
    def netbox_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.netbox}"

    @property
    def openbao_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.openbao}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.moto}"

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prefect}/api"

    def process_env(self) -> dict[str, str]:
        """Set on every long-running process of the lab, so `down` finds them even without PID files."""
        return {LAB_DIR_VARIABLE: str(self.dir)}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"topology": str(self.topology), "root": str(self.root)}
        (self.dir / "lab.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, name: str, root: Path = DEFAULT_ROOT) -> LabConfig:
        """The saved config of an existing lab, or the defaults for a new one."""
        path = root / name / "lab.json"
        if not path.exists():
            return cls(name=name, root=root)
        data = json.loads(path.read_text())
        return cls(
            name=data["name"],
            port_base=int(data["port_base"]),
            topology=Path(data["topology"]),
            root=Path(data["root"]),
            schedules=bool(data.get("schedules", True)),
        )
