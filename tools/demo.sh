#!/usr/bin/env bash
# The main job, end to end, with the installed binary (tools/install.sh):
# format an image in /tmp, mount it through mount(8), write/read/list/df,
# copy a file (cp uses copy_file_range, which cowdax answers with a reflink
# for the block-aligned part), unmount, and check the image with fsck.
# Uses sudo for mount/umount when not root.
set -euo pipefail

image="${COWDAX_DEMO_IMAGE:-/tmp/cowdax-demo.img}"
mnt="${COWDAX_DEMO_MOUNT:-/tmp/cowdax-demo}"
# mount.fuse3 finds cowdax through the shell's default path; so do we.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
else
    as_root() { sudo "$@"; }
fi
say() { printf '\n$ %s\n' "$*"; }
run() { say "$*"; "$@"; }

command -v cowdax >/dev/null || { echo "cowdax is not installed: run tools/install.sh" >&2; exit 1; }

mounted=0
cleanup() {
    if [ "$mounted" -eq 1 ]; then
        as_root umount "$mnt" || true
    fi
}
trap cleanup EXIT

rm -f "$image"
mkdir -p "$mnt"
run cowdax mkfs --size 1G --label demo "$image"
say "mount -t fuse.cowdax $image $mnt -o allow_other,default_permissions,noatime"
as_root mount -t fuse.cowdax "$image" "$mnt" -o allow_other,default_permissions,noatime
mounted=1
run findmnt "$mnt"

say "echo 'hello from persistent memory' > $mnt/hello.txt"
echo 'hello from persistent memory' >"$mnt/hello.txt"
run cat "$mnt/hello.txt"
run mkdir -p "$mnt/dir/sub"
say "dd if=/dev/urandom of=$mnt/dir/data.bin bs=1M count=64"
dd if=/dev/urandom of="$mnt/dir/data.bin" bs=1M count=64 status=none
run ls -la "$mnt" "$mnt/dir"
run df -h "$mnt"

# coreutils cp tries FICLONE (not forwarded by FUSE), then copy_file_range.
run cp "$mnt/dir/data.bin" "$mnt/dir/data.copy"
run cmp "$mnt/dir/data.bin" "$mnt/dir/data.copy"
# A reflinked copy shares its blocks: "Used" does not grow by another 64 MiB.
run df -h "$mnt"
run cowdax df "$mnt"
run cowdax extents "$mnt/dir/data.copy"
run sync

say "umount $mnt"
as_root umount "$mnt"
mounted=0
# fsck counts the blocks the two copies share.
run cowdax fsck -n "$image"
echo
echo "demo finished: $image is a clean cowdax filesystem"
