#!/bin/sh
# Install switchyard as a systemd service. Idempotent: running it again changes nothing but the
# binary and the unit (config and environment files that exist are kept).
#
#   packaging/install.sh [--binary PATH] [--root DIR] [--no-start]
#
# --binary  the switchyard binary to install (default: target/release/switchyard)
# --root    install under DIR instead of / (for packaging and tests; implies --no-start)
set -eu

binary=target/release/switchyard
root=
start=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --root) root=$2; start=no; shift 2 ;;
    --no-start) start=no; shift ;;
    *) echo "usage: $0 [--binary PATH] [--root DIR] [--no-start]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$binary" ] || { echo "no executable at $binary (cargo build --release -p switchyard)" >&2; exit 1; }

# The service user, on the real system only.
if [ -z "$root" ] && ! id switchyard >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/switchyard --shell /usr/sbin/nologin switchyard
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/switchyard" "$root/etc/systemd/system"
install -d -m 0750 "$root/var/lib/switchyard" "$root/var/lib/switchyard/data" "$root/var/lib/switchyard/logs"
if [ -z "$root" ]; then
  chown -R switchyard:switchyard /var/lib/switchyard
fi
install -m 0755 "$binary" "$root/usr/local/bin/switchyard"
install -m 0644 "$here/systemd/switchyard.service" "$root/etc/systemd/system/switchyard.service"

# Config and environment: written once, then the operator's.
if [ ! -e "$root/etc/switchyard/switchyard.toml" ]; then
  cat > "$root/etc/switchyard/switchyard.toml" <<'TOML'
# switchyard settings; every key is also a flag and a SWITCHYARD_* variable (see serve --help).
data_dir = "/var/lib/switchyard/data"
log_file = "/var/lib/switchyard/logs/switchyard.log"
log_max_bytes = 10485760
log_keep = 5
cluster_config_file = "/var/lib/switchyard/config/kvm-compose-config.json"
# The TestbedOS routes (/api/deployments, /api/cluster, ...) on the original's port:
# testbed_listen = "0.0.0.0:3355"
TOML
  chmod 0644 "$root/etc/switchyard/switchyard.toml"
fi
if [ ! -e "$root/etc/switchyard/switchyard.env" ]; then
  cat > "$root/etc/switchyard/switchyard.env" <<'ENV'
# Environment of the switchyard service (flags beat these, these beat switchyard.toml).
SWITCHYARD_LISTEN=127.0.0.1:7700
SWITCHYARD_PEER_LISTEN=127.0.0.1:7701
ENV
  chmod 0644 "$root/etc/switchyard/switchyard.env"
fi

if [ "$start" = yes ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now switchyard.service
  echo "switchyard is running: systemctl status switchyard"
else
  echo "installed under ${root:-/}; start with: systemctl daemon-reload && systemctl enable --now switchyard"
fi
