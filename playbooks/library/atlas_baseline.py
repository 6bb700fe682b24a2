#!/usr/bin/python3
"""Ansible module: a host's baseline files written and applied as a boot applies them, in one run.

As separate tasks (a copy per file, a command per reload) each step cost every host a module run
and the controller a round trip, most of a bring-up's time on a rack. Here, in one module run:

1. the files: every one read first, only those that differ written (atomically, by rename); files
   matching `remove_unlisted` (those Atlas owns outright) that are not among `files` removed;
2. what their change needs, in the order a boot takes them: the hostname set from its file,
   systemd-networkd restarted on its own settings or a new service interface (a reload never makes
   a netdev again) or else reloaded on a changed .network file, the kernel parameters applied from
   Atlas's sysctl file by systemd-sysctl, the service interface deleted with its netdev file;
3. the live state read once (addresses, default route, kernel parameters): what the files say but
   the host does not have (an address removed by hand, a parameter set by hand) is put right by the
   tool that applies it at boot, networkd reconfiguring only the links that are off.

A converged host reports no change; in check mode every step is reported and none is taken. With
`pending`, the paths about to change are recorded there before any is written, and those an earlier
run recorded are applied too: a run that failed after writing a file and before applying it leaves
it to the next run. The record is removed here once everything is applied, unless `pending_kept`
(the playbook applies more, FRR's files, and removes it after). Returns `paths` (every file written,
removed or pending), `commands` (each change and step) and `frr_restart` (FRR's daemons file is
among the paths).
"""

import grp
import json
import os
import pwd
import stat
import tempfile
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: atlas_baseline
short_description: A host's baseline files, written and applied, idempotently, in one run
options:
  files:
    description: >-
      each {path, content, mode (octal string), owner (default root), group (default root)};
      missing parent directories are made with mode 0755
    type: list
    elements: dict
    required: true
  remove_unlisted:
    description: >-
      absolute glob patterns of files Atlas owns outright: a file matching one that is not in
      `files` is removed (a symbolic link itself, never a directory)
    type: list
    elements: str
    default: []
  pending:
    description: >-
      a file listing the paths written and not yet applied: read, extended before any write, and
      removed once they are applied (unless pending_kept)
    type: str
  pending_kept:
    description: the playbook applies more of the files and removes the record itself
    type: bool
    default: false
  applied:
    description: >-
      the paths whose change is applied, by role: hostname, sysctl, networkd (a directory: any
      file under it), networkd_conf, service_netdev, frr_daemons (atlas.hosts.files.APPLIED)
    type: dict
    required: true
  sysctls:
    description: the kernel parameters the sysctl file sets, name to value
    type: dict
    default: {}
  addresses:
    description: interface name to the addresses (address/prefix) its .network file gives it
    type: dict
    default: {}
  gateways:
    description: the default route's next hops, each {gateway, ifname}
    type: list
    elements: dict
    default: []
  route_link:
    description: the link whose .network file holds the default route
    type: str
    default: lo
  service_interface:
    description: the service interface, deleted when its netdev file is removed
    type: str
  settle:
    description: >-
      seconds networkd is given to configure the links of reloaded files before a link still off
      is reconfigured
    type: float
    default: 10
returns:
  paths:
    description: >-
      every path written or removed (or, in check mode, that would be), and every path `pending`
      already listed
  commands:
    description: every file change and every step taken (in check mode, that would be)
  frr_restart:
    description: FRR's daemons file is among the paths (frr.service is restarted on it)
"""


def wanted(spec):
    return {
        "path": spec["path"],
        "content": spec["content"],
        "mode": int(str(spec.get("mode", "0644")), 8),
        "owner": spec.get("owner") or "root",
        "group": spec.get("group") or "root",
    }


def current(path):
    """The file as it is: content, mode, owner and group; None when it is not there."""
    try:
        content = Path(path).read_text(encoding="utf-8", errors="replace")
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise ValueError(f"{path}: a parent of it is not a directory") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory") from None
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None
    return {
        "content": content,
        "mode": stat.S_IMODE(st.st_mode),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
    }


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def differences(want, have):
    """What differs, as short words for the report; every attribute when the file is missing."""
    if have is None:
        return ["created"]
    return [
        f"{what} {_show(what, have[what])} -> {_show(what, want[what])}" if what != "content" else "content"
        for what in ("content", "mode", "owner", "group")
        if have[what] != want[what]
    ]


def diff(want, have):
    """As Ansible's own modules give it: the content as text, the attributes as dicts."""
    items = []
    if have is None or have["content"] != want["content"]:
        before = have["content"] if have else ""
        items.append(
            {
                "before_header": want["path"],
                "after_header": want["path"],
                "before": before,
                "after": want["content"],
            }
        )
    attributes = [
        what for what in ("mode", "owner", "group") if have is not None and have[what] != want[what]
    ]
    if attributes:
        items.append(
            {
                "before": {"path": want["path"], **{a: _show(a, have[a]) for a in attributes}},
                "after": {"path": want["path"], **{a: _show(a, want[a]) for a in attributes}},
            }
        )
    return items


def unlisted(patterns, specs):
    """Existing files matching `patterns` that `specs` do not list, sorted."""
    listed = {w["path"] for w in specs}
    found = {
        str(path)
        for pattern in patterns
        for path in Path("/").glob(pattern.lstrip("/"))
        if path.is_symlink() or path.is_file()  # a link is removed, never what it points to
    }
    return sorted(found - listed)


def removal_diff(path):
    try:
        before = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        before = ""
    return {"before_header": path, "after_header": f"{path} (removed)", "before": before, "after": ""}


def _show(what, value):
    return f"{value:04o}" if what == "mode" else value


def write(want):
    """Atomically: a reader sees the old file or the new one, never half of it."""
    directory = Path(want["path"]).parent
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".atlas-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(want["content"])
        os.chown(tmp, pwd.getpwnam(want["owner"]).pw_uid, grp.getgrnam(want["group"]).gr_gid)
        tmp.chmod(want["mode"])
        tmp.rename(want["path"])
    except BaseException:
        tmp.unlink()
        raise


def sysctls_off(sysctls, read=None):
    """The kernel parameters whose live value is not the file's, sorted; from /proc/sys."""
    read = read or _proc_sys
    return sorted(key for key, value in sysctls.items() if read(key) != str(value))


def _proc_sys(key):
    try:
        return Path("/proc/sys", *key.split(".")).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def links_off(addresses, gateways, route_link, live_addresses, live_default):
    """The links whose live state is not what their files say: an interface missing one of its
    addresses, and the route link when the default route's next hops are not the files' (iproute2's
    JSON: `ip -j -4 addr show`, `ip -j -4 route show default`)."""
    have = {}
    for link in live_addresses or []:
        for a in link.get("addr_info", []):
            have.setdefault(link.get("ifname"), set()).add(f"{a.get('local')}/{a.get('prefixlen')}")
    off = [ifname for ifname, wanted in addresses.items() if set(wanted) - have.get(ifname, set())]
    hops = sorted(
        f"{hop.get('gateway', '')}@{hop.get('dev', '')}"
        for route in live_default or []
        for hop in route.get("nexthops", [route])
    )
    wanted_hops = sorted(f"{g['gateway']}@{g['ifname']}" for g in gateways)
    if wanted_hops and wanted_hops != hops and route_link not in off:
        off.append(route_link)
    return off


def steps(applied, paths, listed):
    """What the changed paths need before the live state is read, in order: (name, argv)."""
    under_networkd = [p for p in paths if p.startswith(applied["networkd"].rstrip("/") + "/")]
    netdev = applied["service_netdev"]
    todo = []
    if applied["hostname"] in paths:
        todo.append(("hostname set from its file", ["hostname", "--file", applied["hostname"]]))
    if applied["networkd_conf"] in paths or (netdev in paths and netdev in listed):
        todo.append(("systemd-networkd restarted", ["systemctl", "restart", "systemd-networkd.service"]))
    elif under_networkd:
        # systemd 252 reconfigures every link a new, changed or removed .network file matches,
        # keeping what stays: a `networkctl reconfigure` on top would flap its routing adjacency
        todo.append(("systemd-networkd reloaded", ["networkctl", "reload"]))
    return todo


class Host:
    """The commands run on the host, each recorded; in check mode recorded only."""

    def __init__(self, module, commands):
        self.module, self.commands = module, commands

    def run(self, name, argv, allowed=None):
        self.commands.append(name)
        if self.module.check_mode:
            return
        rc, out, err = self.module.run_command(argv)
        if rc != 0 and not (allowed and allowed in err):
            self.module.fail_json(
                msg=f"{name}: `{' '.join(argv)}` exited {rc}: {(err or out).strip()}",
                changed=True,
                commands=self.commands,
            )

    def read(self, argv):
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.module.fail_json(  # files may be written already: the report says so
                msg=f"`{' '.join(argv)}` exited {rc}: {err.strip()}",
                changed=bool(self.commands),
                commands=self.commands,
            )
        return json.loads(out) if out.strip() else []

    def links_off(self, p):
        if not p["addresses"] and not p["gateways"]:
            return []
        return links_off(
            p["addresses"],
            p["gateways"],
            p["route_link"],
            self.read(["ip", "-j", "-4", "addr", "show"]),
            self.read(["ip", "-j", "-4", "route", "show", "default"]),
        )


def apply(host, p, paths, listed):
    """Each step the written files and the live state need (module docstring, 2 and 3)."""
    applied = p["applied"]
    todo = steps(applied, paths, listed)
    for name, argv in todo:
        host.run(name, argv)
    reloaded = any(argv[0] != "hostname" for _, argv in todo)  # networkd reloaded or restarted
    # Atlas's file only, by the tool that applies it at boot: another file's parameter that this host
    # cannot take is not this run's to fail on; a later file overriding Atlas's shows as drift
    if applied["sysctl"] in paths or sysctls_off(p["sysctls"]):
        host.run(
            "kernel parameters applied (systemd-sysctl)", ["/lib/systemd/systemd-sysctl", applied["sysctl"]]
        )
    # a dry run that would reload networkd cannot know which links the reload leaves off: none is named
    off = [] if reloaded and host.module.check_mode else host.links_off(p)
    deadline = time.monotonic() + p["settle"]
    while off and reloaded and time.monotonic() < deadline:
        time.sleep(0.2)  # networkd configures the reloaded links in its own time
        off = host.links_off(p)
    if off:
        if not reloaded:  # networkd reconfigures a link from the files as it last read them
            host.run("systemd-networkd reloaded", ["networkctl", "reload"])
        host.run(f"links configured again: {', '.join(off)}", ["networkctl", "reconfigure", *off])
    netdev = applied["service_netdev"]
    if netdev in paths and netdev not in listed:  # networkd makes a new netdev, never removes one
        host.run(
            f"{p['service_interface']} deleted with its netdev file",
            ["ip", "link", "delete", "dev", p["service_interface"]],
            allowed="Cannot find device",
        )


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "remove_unlisted": {"type": "list", "elements": "str", "default": []},
            "pending": {"type": "str", "default": None},
            "pending_kept": {"type": "bool", "default": False},
            "applied": {"type": "dict", "required": True},
            "sysctls": {"type": "dict", "default": {}},
            "addresses": {"type": "dict", "default": {}},
            "gateways": {"type": "list", "elements": "dict", "default": []},
            "route_link": {"type": "str", "default": "lo"},
            "service_interface": {"type": "str", "default": None},
            "settle": {"type": "float", "default": 10.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    specs = [wanted(spec) for spec in p["files"]]
    unknown = [
        f"{w['path']}: no {kind} {name!r} on this host"
        for w in specs
        for kind, name, lookup in (("user", w["owner"], pwd.getpwnam), ("group", w["group"], grp.getgrnam))
        if not _exists(lookup, name)
    ]
    if unknown:
        module.fail_json(msg="; ".join(unknown))
    try:  # every file is read before any is written: a host that cannot take one gets none
        found = [(want, current(want["path"])) for want in specs]
    except ValueError as e:
        module.fail_json(msg=str(e))
    stale = unlisted(p["remove_unlisted"], specs)
    todo = [(want, have, what) for want, have in found if (what := differences(want, have))]
    pending = p["pending"]
    earlier = read_pending(pending)
    if pending and not module.check_mode and todo + stale:
        try:
            record_pending(pending, earlier + [w["path"] for w, _, _ in todo] + stale)
        except OSError as e:
            module.fail_json(msg=f"{pending}: {e.strerror}")
    changes, diffs, paths = [], [], []
    for want, have, what in todo:
        changes.append(f"{want['path']}: {', '.join(what)}")
        paths.append(want["path"])
        diffs += diff(want, have)
        if not module.check_mode:
            try:
                write(want)
            except OSError as e:
                module.fail_json(
                    msg=f"{want['path']}: {e.strerror}", changed=len(changes) > 1, commands=changes
                )
    for path in stale:
        changes.append(f"{path}: removed")
        paths.append(path)
        diffs.append(removal_diff(path))
        if not module.check_mode:
            try:
                Path(path).unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                module.fail_json(msg=f"{path}: {e.strerror}", changed=True, commands=changes)
    paths += [path for path in earlier if path not in paths]
    apply(Host(module, changes), p, paths, {w["path"] for w in specs})
    if pending and paths and not p["pending_kept"] and not module.check_mode:
        Path(pending).unlink(missing_ok=True)
    module.exit_json(
        changed=bool(changes),
        commands=changes,
        diff=diffs,
        paths=paths,
        frr_restart=p["applied"].get("frr_daemons") in paths,
    )


def read_pending(path):
    """The paths an earlier run wrote and did not apply, in order; none without a record."""
    if not path:
        return []
    try:
        return list(dict.fromkeys(Path(path).read_text(encoding="utf-8").split()))
    except FileNotFoundError:
        return []


def record_pending(path, paths):
    write(
        {
            "path": path,
            "content": "".join(f"{p}\n" for p in dict.fromkeys(paths)),
            "mode": 0o600,
            "owner": "root",
            "group": "root",
        }
    )


def _exists(lookup, name):
    try:
        lookup(name)
    except KeyError:
        return False
    return True


if __name__ == "__main__":
    main()
