"""`atlas lab ...`: the lab's own commands, and the lab's environment for `atlas run` and `atlas image`
when they are given `--lab`. atlas/cli.py mounts these lazily, so no other command imports the lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from atlas.lab.config import DEFAULT_ROOT, LabConfig, LabConfigError
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from atlas.lab.pool import WorkPoolLab
from atlas.sot.topology import TopologyError

lab_app = typer.Typer(
    help="The virtual datacenter: NetBox, FRR switches, servers, OpenBao, moto, Prefect.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

LabName = Annotated[
    str, typer.Option("--name", "-n", envvar="ATLAS_LAB", help="Lab name (prefix of its resources)")
]
Root = Annotated[Path, typer.Option("--root", envvar="ATLAS_LAB_ROOT", help="Directory holding labs")]


def _config(name: str, root: Path, port_base: int | None = None, topology: Path | None = None) -> LabConfig:
    try:
        saved = LabConfig.load(name, root)
        return LabConfig(
            name=name,
            root=root,
            port_base=port_base if port_base is not None else saved.port_base,
            topology=topology if topology is not None else saved.topology,
        )
    except LabConfigError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


def lab_env(name: str, root: Path) -> dict[str, str]:
    """What a shell needs to reach the lab `name` (Vault, Prefect, moto): `atlas run ... --lab`."""
    return Lab(_config(name, root)).env()


def _status_table(lab: Lab) -> Table:
    table = Table(title=f"lab {lab.cfg.name}")
    table.add_column("component")
    table.add_column("state")
    table.add_column("where / detail")
    for row in lab.status():
        state = "[green]up[/green]" if row.healthy else "[red]down[/red]"
        table.add_row(row.name, state, row.detail)
    return table


@lab_app.command("up")
def lab_up(
    name: LabName = "atlas",
    root: Root = DEFAULT_ROOT,
    port_base: Annotated[int | None, typer.Option(help="First of six consecutive ports on 127.0.0.1")] = None,
    topology: Annotated[Path | None, typer.Option(help="Directory of topology files")] = None,
) -> None:
    """Boot the lab, or repair whatever part of it is not running. A running lab is left as it is."""
    lab = Lab(_config(name, root, port_base, topology))
    try:
        with console.status("starting") as status:
            report = lab.up(progress=lambda step: status.update(f"[bold]{step}[/bold]"))
    except TopologyError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    except Exception as e:
        err.print(f"[red]lab up failed:[/red] {e}")
        raise typer.Exit(1) from None
    if report.changed:
        f = report.fabric
        fabric = "; ".join(
            f"{what}: {', '.join(names)}"
            for what, names in (("built", f.built), ("removed", f.removed), ("brought back", f.restarted))
            if names
        ) + (f"; {f.cables} cable(s) plugged or pulled" if f.cables else "")
        console.print(
            f"lab {name} up in {report.seconds:.1f} s; started: {', '.join(report.started) or 'nothing'}"
            f"; fabric {fabric or 'kept'}" + (f"; imported {report.imported}" if report.imported else "")
        )
    else:
        console.print(f"lab {name} was already up: nothing changed")
    console.print(_status_table(lab))
    console.print(f"NetBox: {lab.cfg.netbox_url}   Prefect UI: {lab.cfg.prefect_url.removesuffix('/api')}")
    console.print(f"Credentials for this shell: eval $(atlas lab env --name {name})")


@lab_app.command("down")
def lab_down(name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Stop everything of the lab and remove its namespaces, links, mounts, login and directory."""
    lab = Lab(_config(name, root))
    with console.status("stopping") as status:
        removed = lab.down(progress=lambda step: status.update(f"[bold]{step}[/bold]"))
    console.print(f"lab {name} removed: " + ", ".join(f"{v} {k}" for k, v in removed.items()))


@lab_app.command("reset")
def lab_reset(name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Back to a freshly booted lab (NetBox as imported, blank switches and servers), in seconds."""
    lab = Lab(_config(name, root))
    with console.status("resetting") as status:
        report = lab.reset(progress=lambda step: status.update(f"[bold]{step}[/bold]"))
    console.print(f"lab {name} reset in {report.seconds:.1f} s")
    console.print(_status_table(lab))


Node = Annotated[str, typer.Argument(help="A server of the lab, as NetBox names it")]


@lab_app.command("reboot")
def lab_reboot(node: Node, name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Power-cycle a server: a clean shutdown, its NICs reset, then it boots from its own disk."""
    lab = Lab(_config(name, root))
    try:
        with console.status(f"rebooting {node}"):
            lab.reboot(node)
    except Exception as e:
        err.print(f"[red]reboot of {node} failed:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(f"{node} rebooted: it answers SSH again")


@lab_app.command("power")
def lab_power(
    node: Node,
    state: Annotated[str, typer.Argument(help="on or off")],
    name: LabName = "atlas",
    root: Root = DEFAULT_ROOT,
) -> None:
    """Power a server on (it boots and answers SSH) or off (a clean shutdown, then no power)."""
    if state not in ("on", "off"):
        err.print(f"[red]power state must be on or off, not {state!r}[/red]")
        raise typer.Exit(2)
    lab = Lab(_config(name, root))
    try:
        with console.status(f"powering {node} {state}"):
            changed = lab.power(node, state == "on")
    except Exception as e:
        err.print(f"[red]power {state} of {node} failed:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(f"{node} is powered {state}" + ("" if changed else " (it already was)"))


@lab_app.command("wipe")
def lab_wipe(node: Node, name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Give a server a blank disk (as a new one arrives): switched off, no operating system until it
    boots from the network."""
    lab = Lab(_config(name, root))
    try:
        lab.wipe(node)
    except Exception as e:
        err.print(f"[red]wiping {node} failed:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(f"{node} is off with a blank disk: only a boot from the network installs it")


@lab_app.command("status")
def lab_status(name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Health of each component; exit code 1 when anything is down."""
    lab = Lab(_config(name, root))
    rows = lab.status()
    if not rows:
        console.print(f"lab {name} does not exist (atlas lab up --name {name})")
        raise typer.Exit(1)
    console.print(_status_table(lab))
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@lab_app.command("pool")
def lab_pool(
    action: Annotated[str, typer.Argument(help="up or down")],
    name: LabName = "atlas",
    root: Root = DEFAULT_ROOT,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Workers, one flow run each")] = 2,
) -> None:
    """Atlas as a larger install runs it, beside the lab's `atlas serve`: a Prefect server of its own
    on PostgreSQL, prefect.yaml deployed to the process work pool `atlas`, and workers."""
    if action not in ("up", "down"):
        err.print(f"[red]pool {action!r}: up or down[/red]")
        raise typer.Exit(2)
    lab = Lab(_config(name, root))
    pool = WorkPoolLab(lab.cfg, lab.secrets, workers)
    with console.status(f"work pool {action}"):
        changed = pool.up() if action == "up" else pool.down()
    verb = "started" if action == "up" else "stopped"
    console.print(f"work pool {action}: {verb} {', '.join(changed) or 'nothing (already so)'}")
    if action == "up":
        console.print(f"deployments of prefect.yaml registered; Prefect UI: {pool.url.removesuffix('/api')}")


@lab_app.command("env")
def lab_env_command(name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Print shell exports (Vault address and token, Prefect API) for this lab."""
    for key, value in lab_env(name, root).items():
        print(f"export {key}={value}")


@lab_app.command("generate")
def lab_generate(
    out: Annotated[Path, typer.Argument(help="Directory to write topology files into")],
    sites: int = 2,
    spines: int = 2,
    racks: int = 2,
    compute: int = 2,
    storage: int = 1,
    active_racks: Annotated[int, typer.Option(help="Racks per site in service; the rest are planned")] = 1,
) -> None:
    """Write a lab topology of the given size (the default lab is 2 sites x 2 racks)."""
    shape = LabShape(
        sites=sites, spines=spines, racks=racks, compute=compute, storage=storage, active_racks=active_racks
    )
    for path in write(generate(shape), out):
        console.print(f"wrote {path}")
