#!/usr/bin/env bash
# The package test (tools/test.sh runs it after the cargo tests):
# builds the Debian package (tools/build-deb.sh), checks it with lintian
# (errors and warnings fail), installs it with dpkg, formats an image with
# the installed mkfs.cowdax, mounts it with `mount -t fuse.cowdax` and
# through an fstab line, enables the system-wide LD_PRELOAD shim
# (`cowdax shim enable`), has `nobody` run `cp --reflink=always` on the
# mount and checks the copy shares the original's blocks, disables the
# shim, unmounts, runs fsck.cowdax -n, and removes and purges the package,
# checking that none of its files is left.
#
#   tools/test-package.sh              build, then test (root; sudo otherwise)
#   tools/test-package.sh --deb FILE   test FILE
#
# Isolation: the test runs in a private mount namespace in which /etc and
# /usr/local are overlays on a tmpfs. The fstab line and /etc/ld.so.preload
# are written there, so the machine's own files never change (whatever
# happens to the test, even SIGKILL) and no other process on the machine
# preloads the shim. Copies that tools/install.sh put in /usr/local are
# hidden in the overlay, because mount.fuse3 runs `cowdax` through /bin/sh
# with PATH unset and sh's default path puts /usr/local/bin before
# /usr/sbin: the test must mount with the package's /usr/sbin/cowdax, and
# checks that the daemon runs that file. Every step has a time limit and
# the whole test 10 minutes; any failing step fails the test (non-zero).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "test-package: FAIL: $*" >&2
    exit 1
}
step() { printf '\n--- package test: %s\n' "$*"; }

deb=""
case "${1:-}" in
    --deb)
        deb="${2:?--deb needs a file}"
        ;;
    "") ;;
    *) die "usage: tools/test-package.sh [--deb FILE]" ;;
esac

if [ -z "$deb" ]; then
    step "tools/build-deb.sh"
    start=$SECONDS
    deb="$(tools/build-deb.sh)"
    echo "built $deb in $((SECONDS - start)) s"
fi
[ -f "$deb" ] || die "$deb does not exist"
deb="$(realpath "$deb")"

if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" --deb "$deb"
fi
if [ "${COWDAX_PACKAGE_TEST_OUTER_NS:-}" != "" ] &&
    [ "$COWDAX_PACKAGE_TEST_OUTER_NS" = "$(readlink /proc/self/ns/mnt)" ]; then
    die "unshare did not give the test a mount namespace of its own"
fi
if [ -z "${COWDAX_PACKAGE_TEST_OUTER_NS:-}" ]; then
    # A private mount namespace, the whole test bounded to 10 minutes
    # (timeout's TERM runs the cleanup below).
    COWDAX_PACKAGE_TEST_OUTER_NS="$(readlink /proc/self/ns/mnt)"
    export COWDAX_PACKAGE_TEST_OUTER_NS
    exec timeout --kill-after=20 600 unshare --mount --propagation private "$0" --deb "$deb"
fi

# Only the system's directories: never a /usr/local or ~/.cargo copy.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for tool in dpkg dpkg-architecture lintian runuser su flock findmnt fsck timeout; do
    command -v "$tool" >/dev/null || die "$tool is missing (tools/ci-deps.sh installs it)"
done
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
shim_path="/usr/lib/$multiarch/libcowdax_preload.so"
if dpkg-query -W -f '${db:Status-Abbrev}' cowdax 2>/dev/null | grep -q '^.i'; then
    die "the cowdax package is installed already; this test installs and removes it: run 'dpkg -r cowdax' first"
fi

work="$(mktemp -d /tmp/cowdax-package-test.XXXXXX)"
chmod 0755 "$work"
image="$work/image"
mnt="$work/mnt"
mkdir "$mnt"
installed=0

# The pids of the processes whose command line names the mount point (the
# daemon), without starting any process that would match itself.
daemon_pids() {
    local proc arg
    local -a args
    for proc in /proc/[0-9]*; do
        { mapfile -d '' args <"$proc/cmdline"; } 2>/dev/null || continue
        for arg in "${args[@]}"; do
            if [ "$arg" = "$mnt" ]; then
                echo "${proc#/proc/}"
                break
            fi
        done
    done
}

cleanup() {
    local status=$?
    set +e
    if findmnt -n "$mnt" >/dev/null 2>&1; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt"
    fi
    # A daemon still alive 5 s after its unmount would keep this namespace
    # (and the image) alive: end it, by pid.
    local pid i
    for i in $(seq 50); do
        [ -n "$(daemon_pids)" ] || break
        sleep 0.1
    done
    for pid in $(daemon_pids); do
        echo "test-package: killing daemon $pid" >&2
        kill -KILL "$pid"
    done
    if [ "$installed" -eq 1 ]; then
        echo "test-package: purging the package after the failure" >&2
        dpkg -P cowdax >/dev/null
    fi
    # The overlays go with the namespace; unmount them before removing
    # their tmpfs' mount point.
    umount /usr/local 2>/dev/null
    umount /etc 2>/dev/null
    umount "$work/overlay" 2>/dev/null
    rm -rf "$work"
    if [ "$status" -ne 0 ]; then
        echo "test-package: FAILED (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# /etc and /usr/local as overlays on a tmpfs, for this namespace only.
mkdir "$work/overlay"
mount -t tmpfs -o mode=0700 cowdax-package-test "$work/overlay"
mkdir -p "$work/overlay/etc/upper" "$work/overlay/etc/work" \
    "$work/overlay/local/upper"/{bin,sbin,lib} "$work/overlay/local/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$work/overlay/etc/upper,workdir=$work/overlay/etc/work" /etc
hidden=()
for file in bin/cowdax sbin/cowdax sbin/mkfs.cowdax sbin/fsck.cowdax bin/mkfs.cowdax bin/fsck.cowdax \
    lib/libcowdax_preload.so; do
    if [ -e "/usr/local/$file" ] || [ -L "/usr/local/$file" ]; then
        hidden+=("/usr/local/$file")
    fi
    mknod "$work/overlay/local/upper/$file" c 0 0
done
mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$work/overlay/local/upper,workdir=$work/overlay/local/work" /usr/local
if [ "${#hidden[@]}" -gt 0 ]; then
    echo "hidden for the test (tools/install.sh's copies): ${hidden[*]}"
fi

step "lintian (errors and warnings fail)"
# As nobody: lintian unpacks the package and need not be root for that.
cp "$deb" "$work/cowdax.deb"
chmod 0644 "$work/cowdax.deb"
(cd / && timeout 300 runuser -u nobody -- lintian --display-info --fail-on error,warning "$work/cowdax.deb") ||
    die "lintian reports errors or warnings"
echo "lintian: no errors, no warnings"

step "dpkg -i $(basename "$deb")"
# The package's directories that exist before it is installed.
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\.\(/.*[^/]\)/$|\1|p' |
    while read -r dir; do [ -d "$dir" ] && echo "$dir"; done >"$work/dirs-before"
timeout 120 dpkg -i "$deb" || die "dpkg -i $deb failed"
installed=1
dpkg -L cowdax >"$work/files"
dpkg-query -W -f '${Conffiles}\n' cowdax | awk 'NF { print $1 }' >"$work/conffiles"
for file in /usr/sbin/cowdax "$shim_path" /usr/share/man/man8/cowdax.8.gz \
    /usr/share/man/man8/mkfs.cowdax.8.gz /usr/share/man/man8/fsck.cowdax.8.gz \
    /usr/share/bash-completion/completions/cowdax /usr/share/zsh/vendor-completions/_cowdax \
    /usr/share/fish/vendor_completions.d/cowdax.fish /usr/share/bash-completion/completions/mkfs.cowdax \
    /usr/share/bash-completion/completions/fsck.cowdax /usr/share/doc/cowdax/copyright \
    /usr/share/doc/cowdax/changelog.Debian.gz /usr/share/doc/cowdax/README.md; do
    [ -f "$file" ] || die "the package did not install $file"
done
for link in mkfs.cowdax fsck.cowdax; do
    [ "$(readlink -f "/usr/sbin/$link")" = /usr/sbin/cowdax ] || die "/usr/sbin/$link does not lead to /usr/sbin/cowdax"
done
# What mount.fuse3's /bin/sh (PATH unset) runs for "cowdax".
found="$(env -i /bin/sh -c 'command -v cowdax')" || die "/bin/sh with no PATH finds no cowdax"
[ "$found" = /usr/sbin/cowdax ] || die "/bin/sh with no PATH runs $found, not /usr/sbin/cowdax"
echo "installed; /bin/sh without PATH finds $found"

step "mkfs.cowdax"
timeout 60 /usr/sbin/mkfs.cowdax --size 256M --label pkgtest "$image" || die "mkfs.cowdax failed"

# Checks that MNT is a cowdax mount served by the package's binary.
check_mount() {
    local fstype pids pid exe
    fstype="$(findmnt -n -o FSTYPE "$mnt")" || die "$mnt is not mounted"
    [ "$fstype" = fuse.cowdax ] || die "$mnt is $fstype, not fuse.cowdax"
    pids="$(daemon_pids)"
    [ -n "$pids" ] || die "no daemon process names $mnt"
    for pid in $pids; do
        exe="$(readlink "/proc/$pid/exe")" || die "cannot read the executable of daemon $pid"
        [ "$exe" = /usr/sbin/cowdax ] || die "daemon $pid runs $exe, not /usr/sbin/cowdax"
    done
    echo "$mnt: fuse.cowdax, daemon $pids runs /usr/sbin/cowdax"
}
unmount() {
    local i
    for i in $(seq 50); do
        if umount "$mnt" 2>"$work/umount.err"; then
            break
        fi
        grep -q busy "$work/umount.err" || die "umount $mnt: $(cat "$work/umount.err")"
        [ "$i" -lt 50 ] || die "umount $mnt: still busy after 5 s"
        sleep 0.1
    done
    # The daemon holds the image's lock until it has exited.
    timeout 30 flock -x "$image" true || die "the daemon did not release $image within 30 s"
    [ -z "$(daemon_pids)" ] || die "the daemon of $mnt is still running after its unmount"
}

step "mount -t fuse.cowdax"
timeout 60 mount -t fuse.cowdax -o allow_other,default_permissions "$image" "$mnt" ||
    die "mount -t fuse.cowdax $image $mnt failed"
check_mount
dd if=/dev/urandom of="$mnt/a" bs=1M count=4 status=none
chmod 0644 "$mnt/a"
mkdir "$mnt/shared"
chown nobody "$mnt/shared"
sum="$(sha256sum <"$mnt/a")"
unmount

step "mount $mnt (fstab line)"
cp /etc/fstab "$work/fstab"
echo "$image $mnt fuse.cowdax allow_other,default_permissions,noauto 0 0" >>/etc/fstab
timeout 60 mount "$mnt" || die "mount $mnt (its fstab line) failed"
check_mount
[ "$(sha256sum <"$mnt/a")" = "$sum" ] || die "$mnt/a changed across the remount"

as_nobody() { timeout 60 su nobody -s /bin/sh -c "$1"; }
# Without the shim the kernel answers FICLONE on a FUSE file with
# EOPNOTSUPP, and cp --reflink=always exits 1 saying so; anything else
# (a timeout, a missing file) is not that refusal.
expect_reflink_refused() { # COPY-NAME
    local status=0 output
    output="$(as_nobody "cp --reflink=always '$mnt/a' '$mnt/shared/$1'" 2>&1)" || status=$?
    echo "$output"
    if [ "$status" -eq 0 ]; then
        return 1
    fi
    if [ "$status" -ne 1 ] || ! grep -q 'Operation not supported' <<<"$output"; then
        die "cp --reflink=always failed, but not with EOPNOTSUPP (exit $status)"
    fi
}

step "cp --reflink=always as nobody, without the shim (must fail)"
if ! expect_reflink_refused before; then
    die "cp --reflink=always succeeded without the shim: the shim check below would prove nothing"
fi
echo "failed, as it must"

step "cowdax shim enable"
timeout 30 /usr/sbin/cowdax shim enable || die "cowdax shim enable failed"
grep -qxF "$shim_path" /etc/ld.so.preload || die "/etc/ld.so.preload does not name $shim_path: $(cat /etc/ld.so.preload)"
timeout 30 /usr/sbin/cowdax shim status || die "cowdax shim status failed with the shim enabled"

step "cp --reflink=always as nobody, with the shim"
as_nobody "cp --reflink=always '$mnt/a' '$mnt/shared/b'" || die "cp --reflink=always failed with the shim enabled"
cmp "$mnt/a" "$mnt/shared/b" || die "the copy differs from the original"
extents="$(timeout 30 /usr/sbin/cowdax extents "$mnt/shared/b")"
echo "$extents"
summary="$(echo "$extents" | tail -n 1)"
[[ "$summary" =~ ([0-9]+)\ extents\ found,\ ([0-9]+)\ shared ]] || die "cannot read cowdax extents' summary: $summary"
if [ "${BASH_REMATCH[1]}" -eq 0 ] || [ "${BASH_REMATCH[2]}" != "${BASH_REMATCH[1]}" ]; then
    die "the copy does not share all its extents with the original: $summary"
fi
timeout 30 /usr/sbin/cowdax df "$mnt" || die "cowdax df failed"

step "cowdax shim disable"
timeout 30 /usr/sbin/cowdax shim disable || die "cowdax shim disable failed"
if grep -qs libcowdax_preload /etc/ld.so.preload; then
    die "/etc/ld.so.preload still names the shim: $(cat /etc/ld.so.preload)"
fi
# Exit 3: disabled.
status=0
timeout 30 /usr/sbin/cowdax shim status || status=$?
[ "$status" -eq 3 ] || die "cowdax shim status exits $status with the shim disabled, not 3"
if ! expect_reflink_refused after; then
    die "cp --reflink=always still succeeds after cowdax shim disable"
fi
echo "cp --reflink=always fails again"

step "umount, fsck.cowdax -n"
unmount
timeout 120 /usr/sbin/fsck.cowdax -n "$image" || die "fsck.cowdax -n $image is not clean"
# fsck(8) skips, with exit 0, a file that fstab lists with pass 0: take the
# line out first, and check that it ran fsck.cowdax.
cp "$work/fstab" /etc/fstab
output="$(timeout 120 fsck -V -t cowdax -n "$image" 2>&1)" ||
    die "fsck -t cowdax -n $image (fsck(8) running fsck.cowdax) is not clean: $output"
echo "$output"
grep -qF "fsck.cowdax (1) -- $image] fsck.cowdax -n $image" <<<"$output" ||
    die "fsck -t cowdax -n $image did not run fsck.cowdax"

step "dpkg -r cowdax (with the shim enabled: prerm disables it)"
timeout 30 /usr/sbin/cowdax shim enable || die "cowdax shim enable (again) failed"
timeout 120 dpkg -r cowdax || die "dpkg -r cowdax failed"
installed=0
if grep -qs libcowdax_preload /etc/ld.so.preload; then
    die "dpkg -r left /etc/ld.so.preload naming the shim: $(cat /etc/ld.so.preload)"
fi
left=()
while read -r path; do
    [ "$path" = /. ] && continue
    grep -qxF "$path" "$work/conffiles" && continue
    if [ -d "$path" ] && [ ! -L "$path" ]; then
        grep -qxF "$path" "$work/dirs-before" && continue
        left+=("$path/")
    elif [ -e "$path" ] || [ -L "$path" ]; then
        left+=("$path")
    fi
done <"$work/files"
[ "${#left[@]}" -eq 0 ] || die "dpkg -r left: ${left[*]}"
echo "nothing of the package's $(wc -l <"$work/files") paths is left"

step "dpkg -P cowdax"
timeout 120 dpkg -P cowdax || die "dpkg -P cowdax failed"
if dpkg-query -W -f '${db:Status-Abbrev}' cowdax 2>/dev/null | grep -qv '^un'; then
    die "dpkg still knows cowdax after the purge: $(dpkg-query -W -f '${db:Status-Abbrev}' cowdax)"
fi
echo
echo "package test passed"
