from pathlib import Path

import pytest

from atlas.core.model import Role
from atlas.lab.config import LabConfig, LabConfigError
from atlas.lab.generate import LabShape, generate, write
from atlas.sot.topology import load_topology


def test_full_size_datacenter_generates_a_valid_topology(tmp_path: Path) -> None:
    shape = LabShape(sites=1, spines=4, racks=12, compute=18, storage=2)
    topo = load_topology(write(generate(shape), tmp_path))
    devices = topo.all_devices()
    assert sum(d.role == Role.LEAF for d in devices) == 24
    assert sum(d.role == Role.SPINE for d in devices) == 4
    assert sum(d.role.is_server for d in devices) == 240
    # every leaf to every spine, every server to both leaves of its rack, every spine and the client to the core
    assert len(topo.all_cables()) == 24 * 4 + 240 * 2 + 4 + 1
    assert sum(bool(d.anycast) for d in devices) == 12 * 18  # compute servers announce the service
    assert {r.status for s in topo.sites for r in s.racks} == {"active", "planned"}  # the first rack only


def test_the_scale_benchmark_datacenter_has_every_rack_in_service(tmp_path: Path) -> None:
    shape = LabShape(sites=1, spines=4, racks=12, compute=20, storage=0, active_racks=12)
    topo = load_topology(write(generate(shape), tmp_path))
    assert len([r for s in topo.sites for r in s.racks if r.status == "active"]) == 12
    servers = [d for d in topo.all_devices() if d.role.is_server and d.rack]
    assert len(servers) == 240 and all(d.status == "active" for d in servers)


def test_committed_default_lab_is_what_the_generator_writes(tmp_path: Path) -> None:
    write(generate(LabShape()), tmp_path)
    committed = Path(__file__).parents[2] / "inventory" / "lab"
    for path in sorted(tmp_path.iterdir()):
        assert (committed / path.name).read_text() == path.read_text()


@pytest.mark.parametrize("name", ["", "Atlas", "atlas-1", "a" * 9, "1lab"])
def test_lab_names_that_could_collide_or_overflow_link_names_are_refused(name: str) -> None:
    with pytest.raises(LabConfigError):
        LabConfig(name=name)


def test_a_port_base_in_the_ephemeral_range_is_refused() -> None:
    # a listener there may find its port taken by some client's outgoing connection
    with pytest.raises(LabConfigError, match="ephemeral range"):
        LabConfig(name="lab", port_base=58000)


def test_link_names_fit_linux_limits() -> None:
    cfg = LabConfig(name="abcdefgh")
    assert len(cfg.bridge) <= 15
    assert len(f"{cfg.prefix}m1022") <= 15
    ports = cfg.ports
    assert (
        len(
            {
                ports.netbox,
                ports.postgres,
                ports.redis,
                ports.openbao,
                ports.openbao + 1,
                ports.moto,
                ports.prefect,
            }
        )
        == 7
    )
