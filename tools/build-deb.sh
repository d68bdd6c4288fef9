#!/usr/bin/env bash
# Builds the Debian package of cowdax: target/debian/cowdax_VERSION_ARCH.deb
# (the path is printed on stdout, everything else goes to stderr).
#
#   tools/build-deb.sh && sudo dpkg -i target/debian/cowdax_*.deb
#
# A staged tree and dpkg-deb, no debian/ source directory and no cargo-deb:
# dpkg-deb and dpkg-shlibdeps come with dpkg and dpkg-dev (build-essential),
# which every machine that builds cowdax has, while cargo-deb would be
# compiled on every fresh CI machine (`cargo install cargo-deb --locked`:
# 2 min 4 s with -j 2 on the 2-CPU test machine, 2026-12-04, more than the
# whole package build and test) and dpkg-buildpackage wants debhelper,
# a source package and Build-Depends that rustup's cargo does not satisfy.
# The packaging files are in packaging/deb/ (changelog, copyright, prerm,
# lintian overrides); the version is the changelog's, and its upstream part
# must be Cargo.toml's.
#
# Contents:
#   /usr/sbin/cowdax, mkfs.cowdax and fsck.cowdax (links; mount.fuse3 runs
#       `cowdax` through /bin/sh with PATH unset, and sh's default path
#       includes /usr/sbin)
#   /usr/lib/MULTIARCH/libcowdax_preload.so        the LD_PRELOAD shim
#   /usr/share/man/man8/*.8.gz                     `cowdax generate man`
#   /usr/share/bash-completion, zsh, fish          `cowdax generate completions`
#       (for cowdax, mkfs.cowdax and fsck.cowdax)
#   /usr/share/doc/cowdax/                         README.md, docs/*.md,
#       copyright (machine-readable), changelog.Debian.gz
# Depends: fuse3 and the shared libraries dpkg-shlibdeps finds (libc6, …).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "build-deb: $*" >&2
    exit 1
}
say() { echo "build-deb: $*" >&2; }

for tool in cargo dpkg-deb dpkg-shlibdeps dpkg-architecture dpkg-parsechangelog strip gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (tools/ci-deps.sh installs it)"
done

packaging=packaging/deb
version="$(dpkg-parsechangelog -l "$packaging/changelog" -S Version)"
maintainer="$(dpkg-parsechangelog -l "$packaging/changelog" -S Maintainer)"
timestamp="$(dpkg-parsechangelog -l "$packaging/changelog" -S Timestamp)"
pkgid="$(cargo pkgid --offline -p cowdax)"
cargo_version="${pkgid##*[#@]}"
if [ "${version%-*}" != "$cargo_version" ]; then
    die "$packaging/changelog is at $version but Cargo.toml at $cargo_version: add a changelog entry (dch -c $packaging/changelog -v $cargo_version-1)"
fi
arch="$(dpkg-architecture -qDEB_HOST_ARCH)"
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"

say "cargo build --release --locked"
cargo build --release --locked >&2
binary=target/release/cowdax
shim=target/release/libcowdax_preload.so
[ -x "$binary" ] || die "$binary was not built"
[ -f "$shim" ] || die "$shim was not built"
# No package without its manual pages and completions.
if ! "$binary" generate --help >/dev/null 2>&1; then
    die "$binary has no 'generate' command: cannot make the manual pages and completions"
fi

umask 022
out=target/debian
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Binary and links.
install -d "$stage/usr/sbin"
install -m 0755 "$binary" "$stage/usr/sbin/cowdax"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/sbin/cowdax"
ln -s cowdax "$stage/usr/sbin/mkfs.cowdax"
ln -s cowdax "$stage/usr/sbin/fsck.cowdax"

# The shim (a shared object: 0644, like every library).
libdir="$stage/usr/lib/$multiarch"
install -d "$libdir"
install -m 0644 "$shim" "$libdir/libcowdax_preload.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$libdir/libcowdax_preload.so"

# Manual pages. A page that only says `.so man8/OTHER.8` becomes a link
# to OTHER.8.gz, as dh_installman does.
"$binary" generate man "$scratch/man" || die "cowdax generate man failed"
man8="$stage/usr/share/man/man8"
install -d "$man8"
shopt -s nullglob
pages=("$scratch"/man/man8/*.8)
shopt -u nullglob
[ "${#pages[@]}" -gt 0 ] || die "cowdax generate man wrote no page into $scratch/man/man8"
for page in "${pages[@]}"; do
    name="$(basename "$page")"
    if [ "$(wc -l <"$page")" -eq 1 ] && grep -qx '\.so man8/[^/]*\.8' "$page"; then
        target="$(sed 's|^\.so man8/||' "$page")"
        [ -f "$scratch/man/man8/$target" ] || die "$name redirects to $target, which was not generated"
        ln -s "$target.gz" "$man8/$name.gz"
    else
        gzip -9n <"$page" >"$man8/$name.gz"
        chmod 0644 "$man8/$name.gz"
    fi
done
for name in cowdax mkfs.cowdax fsck.cowdax; do
    [ -e "$man8/$name.8.gz" ] || die "cowdax generate man wrote no $name.8"
done

# Shell completions.
# Shell completions, for each of the three names.
"$binary" generate completions "$scratch/completions" || die "cowdax generate completions failed"
for name in cowdax mkfs.cowdax fsck.cowdax; do
    for completion in "bash-completion/completions/$name" "zsh/vendor-completions/_$name" \
        "fish/vendor_completions.d/$name.fish"; do
        [ -s "$scratch/completions/$completion" ] || die "cowdax generate completions wrote no $completion"
    done
done
for dir in bash-completion/completions zsh/vendor-completions fish/vendor_completions.d; do
    install -d "$stage/usr/share/$dir"
    install -m 0644 "$scratch/completions/$dir"/* "$stage/usr/share/$dir/"
done

# Documentation.
doc="$stage/usr/share/doc/cowdax"
install -d "$doc/docs"
install -m 0644 README.md "$doc/README.md"
install -m 0644 docs/*.md "$doc/docs/"
gzip -9n <"$packaging/changelog" >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"
# The crates linked into the binaries (not the build-time proc macros),
# with their licenses, for the copyright file's header comment.
cargo tree --locked --offline -e normal,no-proc-macro --target "$(rustc -vV | sed -n 's/^host: //p')" \
    --prefix none --format '{p}: {l}' -p cowdax -p cowdax-preload |
    sed -e 's/ (\*)$//' -e 's/^\([^ ]*\) v\([^ ]*\):/\1 \2:/' | grep -v -e '^cowdax' -e '^$' | sort -u |
    sed 's/^/ /' >"$scratch/crates"
[ -s "$scratch/crates" ] || die "cargo tree listed no crate"
sed -e "/^@CRATES@\$/{r $scratch/crates" -e 'd}' "$packaging/copyright.in" >"$doc/copyright"
chmod 0644 "$doc/copyright"

if [ -f "$packaging/lintian-overrides" ]; then
    install -D -m 0644 "$packaging/lintian-overrides" "$stage/usr/share/lintian/overrides/cowdax"
fi

# Control area.
install -d "$stage/DEBIAN"
install -m 0755 "$packaging/prerm" "$stage/DEBIAN/prerm"
# dpkg-shlibdeps reads debian/control from the current directory.
mkdir -p "$scratch/shlibdeps/debian"
printf 'Source: cowdax\n\nPackage: cowdax\nArchitecture: any\n' >"$scratch/shlibdeps/debian/control"
abs_stage="$(realpath "$stage")"
shlibs="$(cd "$scratch/shlibdeps" && dpkg-shlibdeps -O \
    -e"$abs_stage/usr/sbin/cowdax" -e"$abs_stage/usr/lib/$multiarch/libcowdax_preload.so")"
shlibs="${shlibs#shlibs:Depends=}"
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared library dependency"
installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat >"$stage/DEBIAN/control" <<EOF
Package: cowdax
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, fuse3
Section: admin
Priority: optional
Description: userspace DAX filesystem for persistent memory, over FUSE
 cowdax serves files from a persistent memory namespace (/dev/daxX.Y,
 /dev/pmem0) or an image file that its daemon maps as one object, with
 loads and stores. Files share blocks through reflinks and dedupe, and are
 written copy-on-write; metadata is checksummed and kept crash-safe by a
 journal and checkpoints.
 .
 This package holds mkfs.cowdax and fsck.cowdax, the daemon that mount(8)
 starts for "mount -t fuse.cowdax" and fstab entries, the reflink tools
 (cowdax clone, dedupe, extents, fsmap, df) and libcowdax_preload.so, an
 LD_PRELOAD shim that makes cp --reflink, xfs_io, filefrag and duperemove
 work on cowdax mounts.
EOF
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

# Reproducible: every timestamp is the changelog's.
find "$stage" -exec touch --no-dereference --date="@$timestamp" {} +
deb="$out/cowdax_${version}_${arch}.deb"
rm -f "$deb"
SOURCE_DATE_EPOCH="$timestamp" dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
say "built $deb"
echo "$deb"
