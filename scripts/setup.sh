#!/usr/bin/env bash
# Installs what Cohesix needs on a Debian machine: the host packages (as root,
# or through sudo), then the npm dependencies from the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

# diod: a stock 9P2000.L server and client tools, used by the interop tests
# and as the reference in the 9P benchmark. cpio: GNU cpio, the reference the
# initramfs writer's tests compare bytes with and extract through.
packages=(diod openssl cpio)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci
fi
