"""The `atlas` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from atlas.lab.config import DEFAULT_ROOT, DEFAULT_TOPOLOGY, LabConfig, LabConfigError
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.lab import Lab
from atlas.topology import TopologyError, load_topology

app = typer.Typer(
    help="Atlas: datacenter automation with NetBox as the source of truth.", no_args_is_help=True
)
lab_app = typer.Typer(
    help="The virtual datacenter: NetBox, FRR switches, servers, OpenBao, moto, Prefect.",
    no_args_is_help=True,
)
topology_app = typer.Typer(help="Topology files: check them, import them into NetBox.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(topology_app, name="topology")
run_app = typer.Typer(help="Run a flow from a shell, with progress, as the UI would.", no_args_is_help=True)
app.add_typer(run_app, name="run")
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
        console.print(
            f"lab {name} up in {report.seconds:.1f} s; started: {', '.join(report.started) or 'nothing'}"
            f"; fabric {'rebuilt' if report.fabric_rebuilt else 'kept'}"
            + (f"; imported {report.imported}" if report.imported else "")
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


@lab_app.command("env")
def lab_env(name: LabName = "atlas", root: Root = DEFAULT_ROOT) -> None:
    """Print shell exports (Vault address and token, Prefect API) for this lab."""
    lab = Lab(_config(name, root))
    for key, value in lab.env().items():
        print(f"export {key}={value}")


@lab_app.command("generate")
def lab_generate(
    out: Annotated[Path, typer.Argument(help="Directory to write topology files into")],
    sites: int = 2,
    spines: int = 2,
    racks: int = 2,
    compute: int = 2,
    storage: int = 1,
) -> None:
    """Write a lab topology of the given size (the default lab is 2 sites x 2 racks)."""
    shape = LabShape(sites=sites, spines=spines, racks=racks, compute=compute, storage=storage)
    for path in write(generate(shape), out):
        console.print(f"wrote {path}")


@app.command("serve")
def serve_command(
    paused_schedules: Annotated[
        bool, typer.Option("--paused-schedules", help="Register schedules paused (e.g. a test lab)")
    ] = False,
) -> None:
    """Serve the deployments of prefect.yaml (rack-bringup, config-sweep, ...) until stopped."""
    from atlas.serve import serve_all

    serve_all(paused_schedules=paused_schedules)


@run_app.command("bringup")
def run_bringup(
    site: Annotated[str, typer.Option(help="NetBox site")],
    rack: Annotated[str, typer.Option(help="NetBox rack")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing")
    ] = False,
    lab: Annotated[str | None, typer.Option(help="Take Vault and Prefect from this lab")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Bring a rack up from a shell: the same flow as the rack-bringup deployment."""
    import logging
    import os

    if lab is not None:
        os.environ.update(Lab(_config(lab, root)).env())
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.rack_bringup import rack_bringup

    class StepDisplay(logging.Handler):
        def __init__(self, status: Status) -> None:
            super().__init__()
            self.status = status

        def emit(self, record: logging.LogRecord) -> None:
            task = getattr(record, "task_run_name", None)
            if task:
                self.status.update(f"[bold]{task.rsplit('-', 1)[0]}[/bold]: {record.getMessage()[:100]}")

    api = os.environ.get("PREFECT_API_URL")
    with temporary_settings({PREFECT_API_URL: api} if api else {}), console.status("starting") as status:
        handler = StepDisplay(status)
        logging.getLogger("prefect.task_runs").addHandler(handler)
        try:
            report = rack_bringup(site=site, rack=rack, dry_run=dry_run)
        except Exception as e:
            err.print(f"[red]rack-bringup {site}/{rack} failed:[/red] {e}")
            raise typer.Exit(1) from None
        finally:
            logging.getLogger("prefect.task_runs").removeHandler(handler)
    table = Table(title=f"rack-bringup {site}/{rack}{' (dry run)' if dry_run else ''}")
    for column in ("device", "role", "result", "changes", "detail"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*(row[c] for c in ("device", "role", "result", "changes", "detail")))
    console.print(table)
    verb = "would change" if dry_run else "changed"
    console.print(f"{report.changed} device(s) {verb}, {report.failed} failed")
    for change in report.netbox_changes:
        console.print(f"NetBox: {change}")


@topology_app.command("check")
def topology_check(directory: Annotated[Path, typer.Argument()] = DEFAULT_TOPOLOGY) -> None:
    """Check topology files and name every problem; nothing is written anywhere."""
    try:
        topo = load_topology(directory)
    except TopologyError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"ok: {len(topo.sites)} sites, {len(topo.all_devices())} devices, {len(topo.all_cables())} cables"
    )


if __name__ == "__main__":
    app()
