"""Where a flow run finds its systems: Vault from the worker's settings, NetBox and Ceph from them."""

from __future__ import annotations

from typing import Any

from prefect.runtime import flow_run

from atlas.bmc import PROTOCOLS
from atlas.ceph.cluster import Ceph
from atlas.core.errors import Refused
from atlas.core.settings import AtlasSettings, load_settings
from atlas.images.catalog import AwsSettings, Catalog
from atlas.provisioning import ProvisioningClient
from atlas.secrets import AWS_PATH, PROVISIONING_PATH, SecretError, Vault, VaultSettings
from atlas.sot.client import connect
from atlas.workloads import workloads_problem


def sources() -> tuple[Any, Vault]:
    """Vault from the worker's settings, NetBox from the settings or else from Vault; settings that
    name a workload adapter Atlas does not know are refused here, before the flow touches anything."""
    settings = load_settings()
    problem = workloads_problem(settings)
    if problem is not None:
        raise Refused([problem])
    vault = Vault(VaultSettings.from_settings(settings))
    url, token = settings.netbox or vault.netbox()
    return connect(url, token, settings.netbox_timeout), vault


def bmc_settings() -> AtlasSettings:
    """How the servers' BMCs are reached (atlas.bmc); an unknown protocol is refused here."""
    settings = load_settings()
    problem = PROTOCOLS.problem("the worker's settings", settings.bmc_protocol)
    if problem is not None:
        raise Refused([problem])
    return settings


def cluster() -> Ceph:
    """The cluster from the worker's settings (CEPH_CONF, with the admin keyring it names)."""
    return Ceph(load_settings().ceph_conf)


def run_name() -> str:
    return str(flow_run.get_name() or "manual")


def image_sources(vault: Vault) -> tuple[Catalog, ProvisioningClient]:
    """The image catalog (secret atlas/aws) and the provisioning service (secret atlas/provisioning)."""
    settings = load_settings()
    catalog = Catalog(AwsSettings.from_secret(vault.read(AWS_PATH)))
    secret = vault.read(PROVISIONING_PATH)
    if not secret.get("url"):
        raise SecretError(f"secret {PROVISIONING_PATH} has no url (the provisioning service)")
    return catalog, ProvisioningClient(str(secret["url"]), timeout=settings.bmc_timeout)
