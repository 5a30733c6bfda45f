#!/usr/bin/env bash
# Installs what the Godot interop suite (test/godot-interop.test.ts) needs, idempotently:
# Debian's godot3-server (Godot 3.5), python3-twisted (the originals' servers), the NAT lab's
# tools, and a Debian-unstable chroot with Godot 4 (bookworm/trixie ship only Godot 3; sid's
# Godot 4 needs a newer libc). The chroot lives outside the repository, at
# $HOLEPUNCH_GODOT4_ROOT (default /opt/holepunch-godot4-root), and is built only if missing
# (~75 s, ~1 GB). Needs root and network access to the Debian mirror.
set -euo pipefail

ROOT="${HOLEPUNCH_GODOT4_ROOT:-/opt/holepunch-godot4-root}"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v godot3-server >/dev/null || need+=(godot3-server)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import twisted' 2>/dev/null || need+=(python3-twisted)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ip >/dev/null || need+=(iproute2)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$ROOT/usr/bin/godot" ]; then
  # A half-built chroot from an interrupted run is rebuilt from scratch.
  if [ -d "$ROOT" ]; then
    umount "$ROOT/proc" 2>/dev/null || true
    rm -rf --one-file-system "$ROOT"
  fi
  tmp="$ROOT.partial"
  umount "$tmp/proc" 2>/dev/null || true
  rm -rf --one-file-system "$tmp"
  debootstrap --variant=minbase sid "$tmp" >/dev/null
  # The mirror's index is older than its validity window, hence Check-Valid-Until=false.
  chroot "$tmp" bash -c 'apt-get -qq -o Acquire::Check-Valid-Until=false update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends godot >/dev/null'
  mv "$tmp" "$ROOT"
fi

echo "godot3: $(godot3-server --version 2>/dev/null | tail -n 1)"
echo "godot4: $(chroot "$ROOT" godot --headless --version 2>/dev/null | tail -n 1) in $ROOT"
