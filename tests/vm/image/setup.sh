#!/usr/bin/env bash
# mmdebstrap --setup-hook of the VM image (tests/vm/lnvm.py build): copies rootfs/ into the
# new root directory ($1) owned by root, before any package is installed, so that the
# initramfs the kernel package builds already follows etc/initramfs-tools/.
set -euo pipefail
tar -C "$(dirname "$0")/rootfs" --owner=0 --group=0 -cf - . | tar -C "$1" -xpf -
