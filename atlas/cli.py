"""The `atlas` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from atlas.images.catalog import AwsSettings, Catalog, ImageError, Manifest
from atlas.lab.config import DEFAULT_ROOT, DEFAULT_TOPOLOGY, LabConfig, LabConfigError
from atlas.lab.generate import LabShape, generate, write
from atlas.lab.images import build as build_lab_image
from atlas.lab.lab import Lab
from atlas.lab.pool import WorkPoolLab
from atlas.secrets import AWS_PATH, SecretError, Vault, VaultSettings
from atlas.sot.topology import TopologyError, load_topology

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
image_app = typer.Typer(
    help="The image catalog: artifacts in S3 with sha256 manifests, AMIs in EC2.", no_args_is_help=True
)
app.add_typer(image_app, name="image")
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
    active_racks: Annotated[int, typer.Option(help="Racks per site in service; the rest are planned")] = 1,
) -> None:
    """Write a lab topology of the given size (the default lab is 2 sites x 2 racks)."""
    shape = LabShape(
        sites=sites, spines=spines, racks=racks, compute=compute, storage=storage, active_racks=active_racks
    )
    for path in write(generate(shape), out):
        console.print(f"wrote {path}")


@app.command("serve")
def serve_command(
    paused_schedules: Annotated[
        bool, typer.Option("--paused-schedules", help="Register schedules paused (e.g. a test lab)")
    ] = False,
) -> None:
    """Serve the deployments of prefect.yaml (rack-bringup, config-sweep, ...) until stopped."""
    from atlas.prefect.serve import serve_all

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


LabOption = Annotated[str | None, typer.Option(help="Take Vault (and so AWS) from this lab")]


def _catalog(lab: str | None, root: Path) -> Catalog:
    """The catalog where Vault says (secret atlas/aws); Vault from the environment or the lab."""
    env = Lab(_config(lab, root)).env() if lab is not None else {}
    try:
        settings = (
            VaultSettings(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
            if env
            else VaultSettings.from_env()
        )
        return Catalog(AwsSettings.from_secret(Vault(settings).read(AWS_PATH)))
    except (SecretError, ImageError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


def _manifest_table(manifests: list[Manifest]) -> Table:
    table = Table()
    for column in ("version", "sha256", "size", "published", "AMIs"):
        table.add_column(column)
    for m in manifests:
        amis = ", ".join(f"{region}: {ami}" for region, ami in sorted(m.amis.items()))
        table.add_row(m.version, m.sha256[:16] + "…", f"{m.size:,} B", m.published_at[:19], amis or "none")
    return table


@image_app.command("publish")
def image_publish(
    version: Annotated[str, typer.Argument(help="Version name, e.g. 2026.11.1")],
    artifact: Annotated[
        Path, typer.Argument(help="The image artifact (.tar.gz)", exists=True, dir_okay=False)
    ],
    amis: Annotated[bool, typer.Option(help="Register the AMI and copy it to every region")] = True,
    lab: LabOption = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Publish a version: same version and content again is a no-op; other content is refused."""
    catalog = _catalog(lab, root)
    try:
        with console.status(f"publishing {version}"):
            published = catalog.publish(version, artifact, amis=amis)
    except ImageError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    for change in published.changes:
        console.print(change)
    if not published.changes:
        console.print(f"{version} is already published with this content: nothing changed")
    console.print(_manifest_table([published.manifest]))


@image_app.command("list")
def image_list(lab: LabOption = None, root: Root = DEFAULT_ROOT) -> None:
    """Every published version, oldest first."""
    console.print(_manifest_table(_catalog(lab, root).versions()))


@image_app.command("show")
def image_show(
    version: Annotated[str, typer.Argument()], lab: LabOption = None, root: Root = DEFAULT_ROOT
) -> None:
    """One version's manifest, as JSON."""
    manifest = _catalog(lab, root).manifest(version)
    if manifest is None:
        err.print(f"[red]image {version} is not in the catalog[/red]")
        raise typer.Exit(1)
    print(manifest.model_dump_json(indent=2))


@image_app.command("build-lab")
def image_build_lab(
    version: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Argument(help="Where to write the artifact")],
    broken: Annotated[bool, typer.Option(help="A release whose service never starts (drills)")] = False,
) -> None:
    """Build an image of the lab's workload, for drills and demos."""
    console.print(f"wrote {build_lab_image(version, out, broken=broken)}")


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
