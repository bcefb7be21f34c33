#!/usr/bin/env bash
# mmdebstrap --customize-hook of the VM image (tests/vm/lnvm.py build): $1 is the root
# directory; LNVM_AUTHORIZED_KEY holds the public key of the build cache's SSH key pair.
set -euo pipefail
root=$1
: "${LNVM_AUTHORIZED_KEY:?}"

# A user with sudo (etc/sudoers.d/lnvm) that Ansible logs in as, with the cache's key.
chmod 0440 "$root/etc/sudoers.d/lnvm"
chroot "$root" useradd --create-home --shell /bin/bash lnvm
install -d -m 0700 "$root/home/lnvm/.ssh"
printf '%s\n' "$LNVM_AUTHORIZED_KEY" >"$root/home/lnvm/.ssh/authorized_keys"
chmod 0600 "$root/home/lnvm/.ssh/authorized_keys"
chroot "$root" chown -R lnvm:lnvm /home/lnvm/.ssh

# Static LAN address from the kernel command line (lnvm-network.service), systemd-networkd.
chroot "$root" systemctl enable systemd-networkd.service lnvm-network.service
# Nothing that wakes up on a timer and eats the emulated CPU during a test.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer

# The host name comes from the kernel command line (systemd.hostname=), resolved by
# libnss-myhostname; no resolver (the VMs have no way out).
echo lnvm >"$root/etc/hostname"
echo '/dev/vda / ext4 rw,noatime,errors=remount-ro 0 1' >"$root/etc/fstab"
: >"$root/etc/resolv.conf"
