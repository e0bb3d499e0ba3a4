#!/usr/bin/env bash
# Installs what Cohesix needs on a Debian machine: the host packages (as root,
# or through sudo), then the npm dependencies from the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

# diod: a stock 9P2000.L server and client tools, used by the interop tests
# and as the reference in the 9P benchmark. cpio: GNU cpio, the reference the
# initramfs writer's tests compare bytes with and extract through.
# qemu-system-arm (qemu-system-aarch64), qemu-utils (qemu-img for the state
# disk and snapshots), binutils-aarch64-linux-gnu (strips the arm64 node):
# booting the aarch64-virt board. xz-utils: `cohesix fetch` unpacks .debs.
# e2fsprogs: mkfs.ext4 formats the VM's state disk. socat: a pty pair for
# the serial console tests. fdisk (sfdisk), dosfstools (mkfs.vfat), mtools:
# `cohesix image` lays out the disk image and fills its FAT boot partition
# without root or loop devices. u-boot-qemu: the qemu_arm64 U-Boot that boots
# the flashed image in the end-to-end test. u-boot-tools: `mkimage` compiles
# the A/B boot script (boot.scr, the try counter U-Boot runs before the
# kernel) that `cohesix image` puts on the boot partition. mosquitto,
# mosquitto-clients: the MQTT broker the fleet link's tests start on an
# ephemeral 127.0.0.1 port (stopped by PID), and mosquitto_pub/sub as the
# reference for its benchmark. zsh: the test checks the generated zsh
# completion script with zsh -n. chromium: the real browser the dashboard's
# tests and benchmark drive through playwright-core (which never downloads
# a browser of its own: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD below).
packages=(diod openssl cpio qemu-system-arm qemu-utils binutils-aarch64-linux-gnu xz-utils e2fsprogs socat fdisk dosfstools mtools u-boot-qemu u-boot-tools mosquitto mosquitto-clients zsh chromium)

# `cohesix fetch` downloads the guest's arm64 .debs with apt-get download,
# which needs arm64 in dpkg's architectures and its package lists.
arch_added=""
if ! { [ "$(dpkg --print-architecture)" = arm64 ] || dpkg --print-foreign-architectures | grep -qx arm64; }; then
  if [ "$(id -u)" = 0 ]; then
    dpkg --add-architecture arm64
    arch_added=1
  else
    echo "setup: cohesix fetch needs arm64 packages from Debian; run as root:" >&2
    echo "  dpkg --add-architecture arm64 && apt-get update" >&2
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
elif [ -n "$arch_added" ]; then
  apt-get update
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci
fi

# The guest's pinned artefacts (arm64 Node, libraries, busybox, kernel, and
# sharp's arm64 packages for images built with --worker inference) for
# `npm start` (cohesix up): fetched into ~/.cache/cohesix when root, where
# apt-get download works; otherwise the commands are printed.
if [ "$(id -u)" = 0 ]; then
  npm run build --silent
  node bin/cohesix.js fetch --board aarch64-virt >/dev/null
else
  echo "setup: to boot the aarch64-virt board, fetch its artefacts:" >&2
  echo "  npm run build && node bin/cohesix.js fetch --board aarch64-virt" >&2
fi
