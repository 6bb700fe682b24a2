"""`atlas serve`: serves the deployments of prefect.yaml from this process (no work pool needed)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve

PROJECT = Path(__file__).resolve().parents[2]


def _load_flow(entrypoint: str) -> Flow[Any, Any]:
    """`flows.rack_bringup.rack_bringup` -> the flow object. Entrypoints name modules, not files, so
    every process (this one, workers, a reader of results) knows a flow's types by one name."""
    path, _, name = entrypoint.rpartition(".")
    module = importlib.import_module(path)
    flow = getattr(module, name)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


def deployments_from(
    prefect_yaml: Path = PROJECT / "prefect.yaml", paused_schedules: bool = False
) -> list[Any]:
    config = yaml.safe_load(prefect_yaml.read_text())
    return [
        _load_flow(d["entrypoint"]).to_deployment(
            name=d["name"],
            description=d.get("description"),
            tags=d.get("tags", []),
            parameters=d.get("parameters", {}),
            cron=[s["cron"] for s in d.get("schedules", [])] or None,
            paused=paused_schedules if d.get("schedules") else None,
        )
        for d in config["deployments"]
    ]


def serve_all(limit: int = 4, paused_schedules: bool = False) -> None:
    # A served deployment stays active when this process stops: another serve process may own it.
    serve(*deployments_from(paused_schedules=paused_schedules), limit=limit, pause_on_shutdown=False)
