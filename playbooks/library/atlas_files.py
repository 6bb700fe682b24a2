#!/usr/bin/python3
"""Ansible module: whole files with given content, mode and owner, all of a host's in one module run.

The baseline writes a handful of small files; as separate copy tasks each costs a stat, a transfer and
a module run on the host (three SSH round trips and a Python start), a large part of a first
bring-up's time on a rack. Reads every file first and writes only those that differ (atomically, by
rename), so a converged host reports no change; in check mode it reports the diff it would apply.
Files matching `remove_unlisted` (those Atlas owns outright) that are not among `files` are removed.
Returns `paths`, every file written or removed, for the tasks that apply them. With `pending`, the
paths about to change are recorded there before any is written, and those an earlier run recorded are
returned too: a run that failed after writing a file and before applying it leaves it to the next
run to apply (the playbook removes the record once everything is applied).
"""

import grp
import os
import pwd
import stat
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: atlas_files
short_description: Files with exact content, mode and owner, idempotently, in one run
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
      left for the playbook to remove once it has applied them
    type: str
returns:
  paths:
    description: >-
      every path written or removed (or, in check mode, that would be), and every path `pending`
      already listed
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


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "remove_unlisted": {"type": "list", "elements": "str", "default": []},
            "pending": {"type": "str", "default": None},
        },
        supports_check_mode=True,
    )
    specs = [wanted(spec) for spec in module.params["files"]]
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
    stale = unlisted(module.params["remove_unlisted"], specs)
    todo = [(want, have, what) for want, have in found if (what := differences(want, have))]
    pending = module.params["pending"]
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
    paths += [p for p in earlier if p not in paths]
    module.exit_json(changed=bool(changes), commands=changes, diff=diffs, paths=paths)


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
