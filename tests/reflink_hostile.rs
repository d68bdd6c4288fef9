//! Hostile arguments to the private ioctls, issued directly: bad magic,
//! version and sizes, overflowing and unaligned offsets, ranges beyond EOF,
//! unknown, foreign and dead tokens, wrong access modes, wrong file types.
//! Each gets a clear errno and changes nothing: contents and usage stay
//! the same, and the image checks clean afterwards.

#[path = "reflink_support/mod.rs"]
mod reflink;
#[path = "fuse_support/mod.rs"]
mod support;

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

use cowdax::ioctl_abi::{self as abi, CloneArgs, DedupeArgs, TokenArgs};
use cowdax_ioctl_call::ioctl_with_block;
use reflink::*;
use support::TestFs;

const MIB: u64 = 1 << 20;

/// errno of a private ioctl on `file` (0 on success).
fn errno_of(file: &File, cmd: u32, mut block: Vec<u8>) -> i32 {
    match ioctl_with_block(file.as_fd(), cmd, &mut block) {
        Ok(_) => 0,
        Err(err) => err.raw_os_error().expect("an errno"),
    }
}

fn token_of(file: &File) -> TokenArgs {
    let mut block = abi::request_header(TokenArgs::SIZE);
    ioctl_with_block(file.as_fd(), abi::GET_TOKEN, &mut block).expect("GET_TOKEN");
    TokenArgs::decode(&block).expect("token block")
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open rw")
}

fn clone_block(token: &TokenArgs, src_offset: u64, dst_offset: u64, length: u64) -> Vec<u8> {
    CloneArgs {
        src_mount_id: token.mount_id,
        src_token: token.token,
        src_offset,
        dst_offset,
        length,
        bytes_cloned: 0,
    }
    .encode()
}

fn dedupe_block(token: &TokenArgs, src_offset: u64, dst_offset: u64, length: u64) -> Vec<u8> {
    DedupeArgs {
        dst_mount_id: token.mount_id,
        dst_token: token.token,
        src_offset,
        dst_offset,
        length,
        status: 0,
        bytes_deduped: 0,
    }
    .encode()
}

#[test]
fn hostile_ioctl_arguments_get_clear_errors_and_change_nothing() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let src_path = t.path("src");
    let dst_path = t.path("dst");
    write_pattern_file(&src_path, MIB, 90);
    write_pattern_file(&dst_path, MIB, 91);
    let src_before = read_at(&src_path, 0, MIB as usize);
    let dst_before = read_at(&dst_path, 0, MIB as usize);
    let usage_before = usage(&t.mnt);

    let src = File::open(&src_path).expect("open src");
    let dst = open_rw(&dst_path);
    let token = token_of(&src);
    assert_eq!(token.flags, abi::TOKEN_READABLE);
    // The same handle always gets the same token; another handle another.
    assert_eq!(token_of(&src).token, token.token);
    let other_handle = File::open(&src_path).expect("open src again");
    assert_ne!(token_of(&other_handle).token, token.token);

    // Malformed blocks.
    let mut bad_magic = clone_block(&token, 0, 0, 4096);
    bad_magic[0] ^= 0xff;
    assert_eq!(errno_of(&dst, abi::CLONE_RANGE, bad_magic), libc::EINVAL);
    let mut bad_version = clone_block(&token, 0, 0, 4096);
    bad_version[4] = 0xee;
    assert_eq!(errno_of(&dst, abi::CLONE_RANGE, bad_version), libc::EINVAL);
    // A known command number with another size: a different ABI.
    let wrong_size = abi::iowr(abi::IOCTL_TYPE, 2, CloneArgs::SIZE + 8);
    assert_eq!(
        errno_of(&dst, wrong_size, vec![0; CloneArgs::SIZE + 8]),
        libc::EINVAL
    );
    // An unknown command with our type letter.
    let unknown = abi::iowr(abi::IOCTL_TYPE, 0x7f, 64);
    assert_eq!(errno_of(&dst, unknown, vec![0; 64]), libc::ENOTTY);
    // A page count larger than the block holds.
    let mut extents = abi::ExtentsArgs::default().encode();
    extents[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(errno_of(&src, abi::GET_EXTENTS, extents), libc::EINVAL);

    // Offsets and lengths.
    let huge: u64 = !4095;
    for (src_off, dst_off, len) in [
        (huge, 0, 4096),                    // source offset overflows
        (0, huge, 4096),                    // destination offset overflows
        (0, 0, huge),                       // length overflows
        (4096, 0, u64::MAX - 4095),         // offset + length wraps
        (100, 0, 4096),                     // unaligned source
        (0, 100, 4096),                     // unaligned destination
        (0, 0, 2 * MIB),                    // beyond the source's EOF
        (2 * MIB, 0, 4096),                 // starts beyond EOF
        (0, 0, 4095),                       // partial block not at EOF
        (i64::MAX as u64 & !4095, 0, 4096), // beyond any file position
    ] {
        assert_eq!(
            errno_of(
                &dst,
                abi::CLONE_RANGE,
                clone_block(&token, src_off, dst_off, len)
            ),
            libc::EINVAL,
            "clone {src_off} {dst_off} {len}"
        );
    }
    let dst_token = token_of(&dst);
    for (src_off, dst_off, len) in [
        (0, huge, 4096),
        (0, 2 * MIB, 4096), // destination range beyond its EOF
        (100, 0, 4096),
        (0, 0, u64::MAX),
        (0, 0, MIB + 4096), // source range past the source's EOF (not shortened)
        (MIB, 0, 4096),     // starts at the source's EOF
    ] {
        assert_eq!(
            errno_of(
                &src,
                abi::DEDUPE_RANGE,
                dedupe_block(&dst_token, src_off, dst_off, len)
            ),
            libc::EINVAL,
            "dedupe {src_off} {dst_off} {len}"
        );
    }
    // Deduping a file onto an overlapping range of itself, even the same
    // range (generic_remap_checks).
    let src_self = token_of(&src);
    for dst_off in [0, 4096] {
        assert_eq!(
            errno_of(
                &src,
                abi::DEDUPE_RANGE,
                dedupe_block(&src_self, 0, dst_off, 8192)
            ),
            libc::EINVAL,
            "dedupe onto itself at {dst_off}"
        );
    }
    // Cloning a file onto an overlapping range of itself.
    let dst_self = token_of(&dst);
    assert_eq!(
        errno_of(
            &dst,
            abi::CLONE_RANGE,
            clone_block(&dst_self, 0, 4096, 8192)
        ),
        libc::EINVAL
    );

    // Tokens: guessed, of another mount, of a closed handle.
    let guessed = TokenArgs {
        token: [0x5a; 16],
        ..token
    };
    assert_eq!(
        errno_of(&dst, abi::CLONE_RANGE, clone_block(&guessed, 0, 0, 4096)),
        libc::EBADF
    );
    let foreign = TokenArgs {
        mount_id: token.mount_id ^ 1,
        ..token
    };
    assert_eq!(
        errno_of(&dst, abi::CLONE_RANGE, clone_block(&foreign, 0, 0, 4096)),
        libc::EXDEV
    );
    let closed = token_of(&other_handle);
    drop(other_handle);
    // The release reaches the daemon asynchronously: wait for it. The probe
    // is misaligned, so while the token still lives it fails with EINVAL
    // instead of cloning into dst (the token is checked first).
    support::wait_for(
        "the released token to die",
        std::time::Duration::from_secs(10),
        || errno_of(&dst, abi::CLONE_RANGE, clone_block(&closed, 1, 1, 4096)) == libc::EBADF,
    );

    // Access modes: the destination must be open for writing, the source
    // for reading, and dedupe's source for reading.
    let dst_read_only = File::open(&dst_path).expect("open dst ro");
    assert_eq!(
        errno_of(
            &dst_read_only,
            abi::CLONE_RANGE,
            clone_block(&token, 0, 0, 4096)
        ),
        libc::EBADF
    );
    let src_write_only = OpenOptions::new()
        .write(true)
        .open(&src_path)
        .expect("open wo");
    let write_only_token = token_of(&src_write_only);
    assert_eq!(write_only_token.flags, abi::TOKEN_WRITABLE);
    assert_eq!(
        errno_of(
            &dst,
            abi::CLONE_RANGE,
            clone_block(&write_only_token, 0, 0, 4096)
        ),
        libc::EBADF
    );
    assert_eq!(
        errno_of(
            &src_write_only,
            abi::DEDUPE_RANGE,
            dedupe_block(&dst_token, 0, 0, 4096)
        ),
        libc::EBADF
    );
    let appending = OpenOptions::new()
        .append(true)
        .open(&dst_path)
        .expect("open append");
    assert_eq!(
        errno_of(
            &appending,
            abi::CLONE_RANGE,
            clone_block(&token, 0, 0, 4096)
        ),
        libc::EBADF
    );

    // File types: no tokens for directories.
    let dir = File::open(&t.mnt).expect("open mount root");
    assert_eq!(
        errno_of(&dir, abi::GET_TOKEN, abi::request_header(TokenArgs::SIZE)),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(&dir, abi::GET_EXTENTS, abi::ExtentsArgs::default().encode()),
        libc::EISDIR
    );

    // Nothing changed.
    drop((src, dst, dst_read_only, src_write_only, appending, dir));
    assert_eq!(read_at(&src_path, 0, MIB as usize), src_before);
    assert_eq!(read_at(&dst_path, 0, MIB as usize), dst_before);
    let usage_after = usage(&t.mnt);
    assert_eq!(usage_after.physical_bytes, usage_before.physical_bytes);
    assert_eq!(usage_after.logical_bytes, usage_before.logical_bytes);
    assert_eq!(shared_bytes(&src_path), 0);
    t.finish();
}

#[test]
fn a_valid_clone_and_dedupe_by_ioctl_report_their_byte_counts() {
    let mut t = TestFs::new(128 * MIB);
    t.mount("");
    let a_path = t.path("a");
    let b_path = t.path("b");
    write_pattern_file(&a_path, MIB + 10, 95);
    write_pattern_file(&b_path, MIB + 10, 95);
    let a = File::open(&a_path).expect("open a");
    let b = open_rw(&b_path);
    // Dedupe to EOF, including the partial last block of both files.
    let mut block = dedupe_block(&token_of(&b), 0, 0, MIB + 10);
    ioctl_with_block(a.as_fd(), abi::DEDUPE_RANGE, &mut block).expect("dedupe");
    let reply = DedupeArgs::decode(&block).expect("dedupe reply");
    assert_eq!(
        (reply.status, reply.bytes_deduped),
        (abi::DEDUPE_SAME, MIB + 10)
    );
    // Different bytes: DIFFERS, nothing shared.
    let c_path = t.path("c");
    write_pattern_file(&c_path, MIB, 96);
    let c = open_rw(&c_path);
    let mut block = dedupe_block(&token_of(&c), 0, 0, MIB);
    ioctl_with_block(a.as_fd(), abi::DEDUPE_RANGE, &mut block).expect("dedupe call");
    let reply = DedupeArgs::decode(&block).expect("dedupe reply");
    assert_eq!(
        (reply.status, reply.bytes_deduped),
        (abi::DEDUPE_DIFFERS, 0)
    );
    assert_eq!(shared_bytes(&c_path), 0);
    // Clone with length 0: to the source's EOF.
    let mut block = clone_block(&token_of(&a), 0, 0, 0);
    ioctl_with_block(c.as_fd(), abi::CLONE_RANGE, &mut block).expect("clone");
    assert_eq!(
        CloneArgs::decode(&block).expect("reply").bytes_cloned,
        MIB + 10
    );
    drop((a, b, c));
    assert!(same_contents(&a_path, &c_path));
    t.finish();
}
