//! ENOSPC on a `writeback_cache` mount (docs/FUSE.md "Write-through, and
//! `writeback_cache`"): write(2) only fills the kernel's page cache, so a
//! write past the capacity fails at writeback; the error must reach the
//! program at fsync(2) or close(2) at the latest, and deleting files must
//! give the space back without a remount.

mod fuse_support;

use std::fs::File;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::Path;

use fuse_support::*;

const CAPACITY_BYTES: u64 = 64 << 20;
const CHUNK_BYTES: usize = 1 << 20;
/// The writer stops at twice the capacity (the kernel takes it all).
const WRITE_LIMIT_BYTES: u64 = 2 * CAPACITY_BYTES;

/// Writes 1 MiB chunks to `file` up to [`WRITE_LIMIT_BYTES`]; returns how
/// many bytes write(2) accepted (it may report ENOSPC early itself, when
/// the kernel had to write back synchronously; then it stops there).
fn write_past_capacity(file: &mut File) -> u64 {
    let chunk: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let mut written = 0;
    while written < WRITE_LIMIT_BYTES {
        match file.write_all(&chunk) {
            Ok(()) => written += CHUNK_BYTES as u64,
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(err) => panic!("write at {written}: {err}"),
        }
    }
    written
}

/// Creates empty files until the filesystem refuses one with ENOSPC (the
/// journal's growth eats the blocks kept back for a checkpoint); bounded.
fn create_until_enospc(dir: &Path) -> usize {
    for made in 0..50_000 {
        match File::create(dir.join(format!("empty-{made}"))) {
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => return made,
            Err(err) => panic!("create {made}: {err}"),
        }
    }
    panic!("50,000 creates on a full filesystem never ran out of space");
}

fn free_bytes(mnt: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(mnt).expect("statvfs");
    stat.blocks_available() as u64 * stat.fragment_size() as u64
}

/// After the full file is deleted: df shows the space free, and a new file
/// can be created, written and synced, without a remount.
fn space_comes_back_after_rm(fs: &TestFs, full: &str) {
    std::fs::remove_file(fs.path(full)).expect("rm the full file");
    let free = free_bytes(&fs.mnt);
    assert!(
        free > CAPACITY_BYTES * 9 / 10,
        "df after rm: {free} bytes free of {CAPACITY_BYTES}"
    );
    let data = vec![0x5au8; 8 << 20];
    let mut file = File::create(fs.path("after-rm")).expect("create after rm");
    file.write_all(&data).expect("write after rm");
    file.sync_all().expect("fsync after rm");
    drop(file);
    std::fs::write(fs.path("small-after-rm"), b"x").expect("small file after rm");
    assert_eq!(std::fs::read(fs.path("after-rm")).expect("read"), data);
    let free_now = free_bytes(&fs.mnt);
    assert!(
        free_now + (8 << 20) <= free + (1 << 20) && free_now + (9 << 20) >= free,
        "df: {free} free before an 8 MiB file, {free_now} after"
    );
}

#[test]
fn write_past_capacity_with_writeback_cache_fails_at_fsync_and_rm_gives_space_back() {
    let mut fs = TestFs::new(CAPACITY_BYTES);
    fs.mount("writeback_cache");
    let mut file = File::create(fs.path("fill")).expect("create");
    let accepted = write_past_capacity(&mut file);
    eprintln!("write(2) accepted {accepted} bytes");
    let synced = file.sync_all();
    assert!(
        accepted < WRITE_LIMIT_BYTES
            || synced
                .as_ref()
                .is_err_and(|err| err.raw_os_error() == Some(libc::ENOSPC)),
        "write(2) took {accepted} bytes of a {CAPACITY_BYTES}-byte filesystem and fsync said \
         {synced:?}, not ENOSPC"
    );
    drop(file);
    create_until_enospc(&fs.mnt);
    space_comes_back_after_rm(&fs, "fill");
    fs.finish();
}

#[test]
fn write_past_capacity_with_writeback_cache_fails_at_close_and_rm_gives_space_back() {
    let mut fs = TestFs::new(CAPACITY_BYTES);
    fs.mount("writeback_cache");
    let mut file = File::create(fs.path("fill")).expect("create");
    let accepted = write_past_capacity(&mut file);
    eprintln!("write(2) accepted {accepted} bytes");
    // close(2) itself, not File's drop (which ignores its result).
    let closed = nix::unistd::close(file.into_raw_fd());
    assert!(
        accepted < WRITE_LIMIT_BYTES || closed == Err(nix::errno::Errno::ENOSPC),
        "write(2) took {accepted} bytes of a {CAPACITY_BYTES}-byte filesystem and close said \
         {closed:?}, not ENOSPC"
    );
    create_until_enospc(&fs.mnt);
    space_comes_back_after_rm(&fs, "fill");
    fs.finish();
}
