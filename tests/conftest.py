"""One real lab per test session: NetBox, OpenBao, moto, Prefect and the FRR fabric, booted by Atlas.

The test lab has the default lab's shape on its own addresses and ports, so it runs beside a demo lab.
Set ATLAS_KEEP_LAB=1 to leave it running afterwards (the next test run then starts in seconds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import IPv4Network

import pynetbox
import pytest

from atlas.core.model import Site
from atlas.lab.config import DEFAULT_ROOT, LabConfig
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from atlas.lab.servers import flow_run_env
from atlas.secrets import Vault, VaultSettings
from atlas.sot.client import connect
from atlas.sot.read import read_site, site_names
from atlas.sot.topology import Topology, load_topology

TEST_SHAPE = LabShape(
    mgmt=IPv4Network("198.18.4.0/22"),
    loopbacks=IPv4Network("198.19.4.0/22"),
    fabric=IPv4Network("198.18.128.0/18"),
)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    topology_dir = DEFAULT_ROOT / "atest" / "topology"
    the_lab = Lab(LabConfig(name="atest", port_base=29000, topology=topology_dir, schedules=False))
    if os.environ.get("ATLAS_KEEP_LAB") and the_lab.status() and all(r.healthy for r in the_lab.status()):
        the_lab.reset()  # seconds: NetBox as imported, blank switches and servers
    else:
        the_lab.down()  # whatever an earlier session left, configured or half-dead
        write(generate(TEST_SHAPE), topology_dir)
        the_lab.up()
    yield the_lab
    if not os.environ.get("ATLAS_KEEP_LAB"):
        the_lab.down()


@pytest.fixture(scope="session")
def topology(lab: Lab) -> Topology:
    return load_topology(lab.cfg.topology)


@pytest.fixture(scope="session")
def nb(lab: Lab) -> pynetbox.api:
    return connect(lab.cfg.netbox_url, lab.secrets.netbox_token)


@pytest.fixture(scope="session")
def vault(lab: Lab) -> Vault:
    return Vault(VaultSettings(url=lab.cfg.openbao_url, token=lab.secrets.openbao_root_token))


@pytest.fixture(scope="session")
def sites(nb: pynetbox.api) -> list[Site]:
    return [read_site(nb, name) for name in site_names(nb)]


@pytest.fixture(scope="session")
def flow_env(lab: Lab) -> Iterator[None]:
    """Flows find Vault and Prefect the way they do in production: from the environment."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect's own setting is scoped below; the rest as the lab's workers get them
    env = flow_run_env(lab.cfg, lab.secrets, lab.cfg.prefect_url)
    env.pop("PREFECT_API_URL")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with temporary_settings({PREFECT_API_URL: lab.cfg.prefect_url}):
        yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked after_everything go last, in their own order."""
    items.sort(key=lambda item: item.get_closest_marker("after_everything") is not None)
