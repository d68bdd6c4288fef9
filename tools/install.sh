#!/usr/bin/env bash
# Builds cowdax in release mode and installs it:
#   $PREFIX/bin/cowdax                       (PREFIX defaults to /usr/local)
#   $PREFIX/sbin/mkfs.cowdax, fsck.cowdax    symlinks to it
#   $PREFIX/lib/libcowdax_preload.so         when the LD_PRELOAD shim is built
# /usr/local/bin matters: mount.fuse3 runs `cowdax` through /bin/sh with no
# PATH in the environment, and the shell's default path includes it.
# Builds as the calling user; installs with sudo when not root and PREFIX is
# not writable.  DESTDIR is honoured for packaging.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
bindir="$DESTDIR$PREFIX/bin"
sbindir="$DESTDIR$PREFIX/sbin"
libdir="$DESTDIR$PREFIX/lib"

cargo build --release --locked

if [ "$(id -u)" -eq 0 ] || { mkdir -p "$bindir" "$sbindir" 2>/dev/null && [ -w "$bindir" ] && [ -w "$sbindir" ]; }; then
    as_root() { "$@"; }
else
    as_root() { sudo "$@"; }
fi

as_root install -d "$bindir" "$sbindir"
as_root install -m 0755 target/release/cowdax "$bindir/cowdax"
for name in mkfs.cowdax fsck.cowdax; do
    as_root ln -sfn "$PREFIX/bin/cowdax" "$sbindir/$name"
done
echo "installed $bindir/cowdax, $sbindir/mkfs.cowdax, $sbindir/fsck.cowdax"

preload=target/release/libcowdax_preload.so
if [ -f "$preload" ]; then
    as_root install -d "$libdir"
    as_root install -m 0755 "$preload" "$libdir/libcowdax_preload.so"
    echo "installed $libdir/libcowdax_preload.so"
fi
