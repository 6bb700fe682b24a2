#!/bin/sh
# Lab path of the ceph_osd role: COUNT OSDs on file-backed bluestore in this host's /var/lib/ceph
# (production uses ceph-volume on the disks NetBox lists). Creates only the missing ones, starts the
# stopped ones, and says whether it changed anything: re-running it is always safe.
# usage: osd-file.sh COUNT
set -eu
want=$1
changed=0
mkdir -p /var/lib/ceph/osd /var/log/ceph /run/ceph
fsid=$(ceph-conf --lookup fsid)
for dir in /var/lib/ceph/osd/ceph-*; do
  [ -d "$dir" ] || continue
  if [ "$(cat "$dir/ceph_fsid" 2>/dev/null)" != "$fsid" ]; then
    echo "$dir holds an OSD that is not of cluster $fsid (or no OSD at all): refusing to touch it" >&2
    exit 1
  fi
done
have=$(find /var/lib/ceph/osd -mindepth 1 -maxdepth 1 -name 'ceph-*' | wc -l)
while [ "$have" -lt "$want" ]; do
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | ceph --name client.bootstrap-osd \
    --keyring /var/lib/ceph/bootstrap-osd/ceph.keyring osd new "$uuid" -i -)
  dir=/var/lib/ceph/osd/ceph-$id
  mkdir -p "$dir"
  ceph-authtool --create-keyring "$dir/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >"/var/log/ceph/mkfs-osd.$id.log" 2>&1
  have=$((have + 1))
  changed=1
done
for dir in /var/lib/ceph/osd/ceph-*; do
  [ -d "$dir" ] || continue
  id=${dir##*-}
  pidfile=/run/ceph/ceph-osd.$id.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    continue
  fi
  ceph-osd -i "$id"
  changed=1
done
echo "ATLAS_CHANGED=$changed"
