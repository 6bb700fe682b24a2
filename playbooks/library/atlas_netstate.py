#!/usr/bin/python3
"""Ansible module: bring a host's addresses and default route to a desired state with iproute2.

Reads the current state first and changes only what differs (so a converged host reports no change);
in check mode it reports what it would change. Production hosts would carry the same state in
systemd-networkd files; the lab's hosts have no init system, so the state is applied directly.
"""

import json
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: atlas_netstate
short_description: Addresses on interfaces and an ECMP default route, idempotently
options:
  addresses:
    description: interface name -> list of CIDR addresses it must carry (others are removed)
    type: dict
    required: true
  default_gateways:
    description: list of {gateway, ifname}; an ECMP default route over all of them
    type: list
    elements: dict
    required: true
  service_addresses:
    description: >-
      anycast addresses the host's routing announces; they live on the dummy interface
      service_interface, created down when missing. Whether it is up is the drain state of the
      host's workloads, so it is never brought up or down here. Empty: no such interface.
    type: list
    elements: str
    default: []
  service_interface:
    type: str
    default: anycast0
"""


def ip_json(*args):
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def current_addresses(ifnames):
    found = {name: [] for name in ifnames}
    for link in ip_json("-4", "addr", "show"):
        if link["ifname"] in found:
            found[link["ifname"]] = sorted(
                f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
            )
    return found


def link_exists(ifname):
    return any(link["ifname"] == ifname for link in ip_json("link", "show"))


def current_gateways():
    routes = [r for r in ip_json("-4", "route", "show", "default")]
    hops = []
    for r in routes:
        if "nexthops" in r:
            hops += [(h.get("gateway"), h.get("dev")) for h in r["nexthops"]]
        elif "gateway" in r:
            hops.append((r["gateway"], r.get("dev")))
    return sorted(hops)


def main():
    module = AnsibleModule(
        argument_spec={
            "addresses": {"type": "dict", "required": True},
            "default_gateways": {"type": "list", "elements": "dict", "required": True},
            "service_addresses": {"type": "list", "elements": "str", "default": []},
            "service_interface": {"type": "str", "default": "anycast0"},
        },
        supports_check_mode=True,
    )
    want_addrs = {k: sorted(v) for k, v in module.params["addresses"].items()}
    want_gw = sorted((g["gateway"], g["ifname"]) for g in module.params["default_gateways"])
    have_addrs = current_addresses(want_addrs)
    have_gw = current_gateways()
    commands = []
    for ifname, addrs in want_addrs.items():
        for a in sorted(set(have_addrs[ifname]) - set(addrs)):
            commands.append(["ip", "addr", "del", a, "dev", ifname])
        for a in sorted(set(addrs) - set(have_addrs[ifname])):
            commands.append(["ip", "addr", "add", a, "dev", ifname])
        commands.append(["ip", "link", "set", ifname, "up"])
    service, want_service = module.params["service_interface"], sorted(module.params["service_addresses"])
    have_service = current_addresses([service])[service] if link_exists(service) else None
    if want_service and have_service is None:
        # created down: the address is announced once the host's workloads are undrained, that is
        # once a service runs there to answer it
        commands.append(["ip", "link", "add", service, "type", "dummy"])
        have_service = []
    elif not want_service and have_service is not None:
        commands.append(["ip", "link", "del", service])
    for a in sorted(set(have_service or []) - set(want_service)) if want_service else []:
        commands.append(["ip", "addr", "del", a, "dev", service])
    for a in sorted(set(want_service) - set(have_service or [])):
        commands.append(["ip", "addr", "add", a, "dev", service])
    if have_gw != want_gw:
        route = ["ip", "route", "replace", "default"]
        for gateway, ifname in want_gw:
            route += ["nexthop", "via", gateway, "dev", ifname]
        commands.append(route)
    changes = [c for c in commands if c[1:3] != ["link", "set"]]
    result = {
        "changed": bool(changes),
        "diff": {
            "before": json.dumps(
                {"addresses": have_addrs, "default": have_gw, service: have_service}, indent=1
            )
            + "\n",
            "after": json.dumps(
                {"addresses": want_addrs, "default": want_gw, service: want_service or None}, indent=1
            )
            + "\n",
        },
        "commands": [" ".join(c) for c in changes],
    }
    if changes and not module.check_mode:
        for c in commands:
            rc, _, err = module.run_command(c)
            if rc != 0 and c[-2:] == ["type", "dummy"] and "Unknown device type" in err:
                # a kernel without the dummy driver (a container's): ifb is as inert, and also built in
                rc, _, err = module.run_command([*c[:-1], "ifb"])
            if rc != 0:
                module.fail_json(msg=f"{' '.join(c)} failed: {err.strip()}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
