#!/usr/bin/env bash
# Installs the system pieces the tests and the demo need and cargo cannot
# provide: FUSE 3, filesystem tools the tests compare against or probe with,
# the users the permission tests switch to, a usable /dev/fuse and
# `user_allow_other` in /etc/fuse.conf. Idempotent; uses sudo when not root.
#
#   tools/ci-deps.sh            install only what is missing
#   tools/ci-deps.sh --update   always run apt-get update first (CI)
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
else
    as_root() { sudo "$@"; }
fi

# command → Debian package that provides it.
declare -A package_of=(
    [fusermount3]=fuse3
    [pkg-config]=pkg-config
    [mkfs.xfs]=xfsprogs
    [xfs_io]=xfsprogs
    [mkfs.btrfs]=btrfs-progs
    [mkfs.ext4]=e2fsprogs
    [filefrag]=e2fsprogs
    [duperemove]=duperemove
    [losetup]=util-linux
    [fio]=fio
    [cc]=build-essential
    # The package build (tools/build-deb.sh) and its test (tools/test-package.sh).
    [dpkg-shlibdeps]=dpkg-dev
    [lintian]=lintian
    # tests/cli_man.rs renders every manual page with both.
    [groff]=groff-base
    [man]=man-db
)
missing=()
for command in "${!package_of[@]}"; do
    if ! PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH" \
        command -v "$command" >/dev/null 2>&1; then
        missing+=("${package_of[$command]}")
    fi
done
# Libraries have no command; ask dpkg. (libacl1-dev: pjdfstest links it.)
for package in libfuse3-dev libacl1-dev; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done

if [ "${1:-}" = "--update" ] || [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
    # Deduplicate (xfsprogs and e2fsprogs provide two commands each).
    mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "ci-deps: installing ${packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

# Users the FUSE permission tests run as.
for user in tests nobody; do
    if ! id "$user" >/dev/null 2>&1; then
        echo "ci-deps: creating user $user"
        as_root useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    fi
done

# /dev/fuse: the module loaded and the node present.
if [ ! -c /dev/fuse ]; then
    as_root modprobe fuse 2>/dev/null || true
    if [ ! -c /dev/fuse ]; then
        as_root mknod -m 0666 /dev/fuse c 10 229
    fi
fi
if [ ! -c /dev/fuse ]; then
    echo "ci-deps: /dev/fuse is missing and cannot be created" >&2
    exit 1
fi
# Debian ships it 0666 so that fusermount3 works for every user; some
# containers create it 0600.
if [ "$(stat -c %a /dev/fuse)" != "666" ]; then
    echo "ci-deps: making /dev/fuse usable by every user (0666, as Debian ships it)"
    as_root chmod 0666 /dev/fuse
fi

# allow_other for mounts made by non-root users (mount.fuse3 checks this).
if ! grep -qs '^[[:space:]]*user_allow_other' /etc/fuse.conf; then
    echo "ci-deps: enabling user_allow_other in /etc/fuse.conf"
    echo "user_allow_other" | as_root tee -a /etc/fuse.conf >/dev/null
fi
echo "ci-deps: system dependencies are in place"
