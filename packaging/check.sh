#!/bin/sh
# CI check of the packaging: the unit passes systemd-analyze verify, installing twice gives the
# same tree (idempotent), and uninstall removes the service but keeps the data.
#
#   packaging/check.sh BINARY
set -eu
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sh "$here/install.sh" --binary "$binary" --root "$tmp/stage" >/dev/null
# verify checks that ExecStart's program exists: check a copy that points at the binary given.
mkdir -p "$tmp/unit"
sed "s|/usr/local/bin/switchyard|$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")|" \
  "$tmp/stage/etc/systemd/system/switchyard.service" > "$tmp/unit/switchyard.service"
out=$(systemd-analyze verify "$tmp/unit/switchyard.service" 2>&1) || { echo "$out" >&2; exit 1; }
[ -z "$out" ] || { echo "systemd-analyze verify: $out" >&2; exit 1; }

snapshot() { (cd "$tmp/stage" && find . -printf '%p %m %s\n' | sort && find . -type f -exec md5sum {} + | sort); }
snapshot > "$tmp/first"
echo "# edited by the operator" >> "$tmp/stage/etc/switchyard/switchyard.toml"
cp "$tmp/stage/etc/switchyard/switchyard.toml" "$tmp/edited"
sh "$here/install.sh" --binary "$binary" --root "$tmp/stage" >/dev/null
cmp -s "$tmp/edited" "$tmp/stage/etc/switchyard/switchyard.toml" || { echo "install overwrote the config" >&2; exit 1; }
cp "$tmp/first" "$tmp/expect"
# Apart from the operator's edit, nothing differs after the second run.
sed -i '/switchyard.toml/d' "$tmp/expect"
snapshot | sed '/switchyard.toml/d' > "$tmp/second"
diff -u "$tmp/expect" "$tmp/second"

sh "$here/uninstall.sh" --root "$tmp/stage" >/dev/null
[ ! -e "$tmp/stage/etc/systemd/system/switchyard.service" ] && [ -d "$tmp/stage/var/lib/switchyard/data" ] \
  || { echo "uninstall did not remove the unit or removed the data" >&2; exit 1; }
echo "packaging: unit verified, install idempotent, uninstall keeps data"
