#!/bin/sh
# Remove the switchyard service and binary. Data, logs and config stay unless --purge.
#
#   packaging/uninstall.sh [--root DIR] [--purge]
set -eu

root=
purge=no
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --purge) purge=yes; shift ;;
    *) echo "usage: $0 [--root DIR] [--purge]" >&2; exit 2 ;;
  esac
done

if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now switchyard.service 2>/dev/null || true
fi
rm -f "$root/etc/systemd/system/switchyard.service" "$root/usr/local/bin/switchyard"
if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
if [ "$purge" = yes ]; then
  rm -rf "$root/var/lib/switchyard" "$root/etc/switchyard"
  if [ -z "$root" ] && id switchyard >/dev/null 2>&1; then
    userdel switchyard || true
  fi
  echo "switchyard removed with its data and config"
else
  echo "switchyard removed; data in ${root}/var/lib/switchyard and config in ${root}/etc/switchyard kept (--purge removes them)"
fi
