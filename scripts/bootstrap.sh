#!/usr/bin/env bash
# Installs what Atlas and its lab need on a fresh Debian 12 machine, idempotently:
# Debian packages, uv, and the project's venv (Python 3.12, pinned by uv.lock).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  frr frr-pythontools lldpd openssh-server openssh-client redis-server postgresql libpq-dev gcc
  ceph-mon ceph-osd ceph-mgr ceph-common iproute2 util-linux procps iputils-ping
  systemd-container debootstrap kea-dhcp4-server udhcpc
  chromium udev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  # Package scripts must not start system-wide daemons (redis, sshd, ceph): the lab starts its own.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv"
  python3 -m pip install -q uv 2>&1 | grep -v "is ignored" || true
fi

# pyenv's 3.12 on these machines; elsewhere whatever python3.12 the system has.
py312=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.12.1/bin/python3.12" ]; then
  py312="$(pyenv root)/versions/3.12.1/bin/python3.12"
elif command -v python3.12 >/dev/null 2>&1; then
  py312="$(command -v python3.12)"
fi
if [ -z "$py312" ]; then
  echo "bootstrap: no Python 3.12 interpreter found (Atlas and NetBox 4.7 need it)" >&2
  exit 1
fi
uv sync --frozen --python "$py312" --quiet
echo "bootstrap: ready ($(.venv/bin/python --version), $(uv --version))"
