"""The site view every flow reads once: a site as NetBox has it, with the devices at the far ends of
its cables in other sites, and the credentials of the devices a run reaches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pynetbox

from atlas.core.model import Credential, Device, DeviceStatus, Site
from atlas.core.run import Target, targets
from atlas.net.render import render, switch_intent
from atlas.secrets import Vault
from atlas.sot.read import NotInNetBox, read_devices, read_site_and_far_ends

Creds = dict[tuple[str, str], Credential]  # by (site, role)


@dataclass(frozen=True)
class SiteView:
    """A site as NetBox has it, with the devices at the far ends of its cables in other sites."""

    site: Site
    devices: dict[str, Device]

    def peers(self, name: str) -> list[tuple[str, Device]]:
        """(my interface, the device at the far end) for every cable of `name`."""
        found = []
        for cable in self.site.cables_of(name):
            mine, far = cable.ends_from(name)
            if far.device in self.devices:
                found.append((mine.interface, self.devices[far.device]))
        return found

    def ports_towards(self, name: str, other: str) -> list[str]:
        return [port for port, peer in self.peers(name) if peer.name == other]

    def render(self, device: Device) -> str:
        return render(switch_intent(self.site, device, self.devices))

    @property
    def active_switches(self) -> tuple[Device, ...]:
        return tuple(d for d in self.site.devices if d.role.is_switch and d.status == DeviceStatus.ACTIVE)


def read_view(nb: pynetbox.api, site: str) -> SiteView:
    whole, far_ends = read_site_and_far_ends(nb, site)
    return SiteView(site=whole, devices={d.name: d for d in (*whole.devices, *far_ends)})


def view_from(sites: dict[str, Site], name: str) -> SiteView:
    """The view of site `name` built from every site as a run already read them (an evacuation reads
    them all): the same view `read_view` gives, without reading NetBox again."""
    site = sites[name]
    ends = {end.device for cable in site.cables for end in cable.ends()}
    far = {d.name: d for s in sites.values() if s.name != name for d in s.devices if d.name in ends}
    return SiteView(site=site, devices={d.name: d for d in site.devices} | dict(sorted(far.items())))


def site_of_switch(nb: pynetbox.api, name: str) -> str:
    found = read_devices(nb, [name])
    if not found:
        raise NotInNetBox(f"no device {name!r} in NetBox")
    return found[0].site


def credentials(vault: Vault, devices: Iterable[Device]) -> Creds:
    """By (site, role), read once per run; values never leave memory."""
    return {key: vault.credential(*key) for key in sorted({(d.site, d.role.value) for d in devices})}


def vault_targets(vault: Vault, devices: Iterable[Device]) -> list[Target]:
    """The devices as Targets, in order, their credentials read once per site and role (`credentials`);
    Refused naming each device without a management address or a credential."""
    todo = list(devices)
    creds = credentials(vault, todo)
    return targets(todo, lambda d: creds.get((d.site, d.role.value)))


def live_switches(view: SiteView) -> list[Device]:
    """Every active switch of the view, far ends included: the ones whose state a cost-out reads."""
    return [d for d in view.devices.values() if d.role.is_switch and d.status == DeviceStatus.ACTIVE]
