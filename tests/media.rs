//! Integration tests of `MmapMedia` on real mappings: image files in /tmp and
//! /dev/shm, a loop block device, forced flush paths, locking, read-only mode.
//!
//! Every test opens with an explicit flush choice (`open_with`/`create_with`)
//! so that a `COWDAX_FORCE_FLUSH` in the environment cannot change what it
//! proves; the environment variable itself is tested in a child process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use cowdax::media::detect;
use cowdax::media::flush::FORCE_FLUSH_ENV;
use cowdax::media::{FlushMethod, Media, MediaError, MediaKind, MmapMedia, OpenMode};

const MIB: u64 = 1 << 20;

/// The page size, the unit of msync ranges.
fn page() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap() as u64
}

/// Log records of every test in this binary, for tests that check a notice.
fn captured_logs() -> &'static Mutex<Vec<String>> {
    static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        captured_logs()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }
    fn flush(&self) {}
}

fn install_logger() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_logger(&CaptureLogger).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

fn logs_mentioning(needle: &str) -> Vec<String> {
    captured_logs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}

fn shm_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").expect("/dev/shm is writable")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes through every mutating call, persists and fences, and returns the
/// expected contents of the first `len` bytes.
fn exercise_writes(media: &MmapMedia, len: usize) -> Vec<u8> {
    let mut expected = vec![0u8; len];
    let big = pattern(64 * 1024, 7);
    media.write(8192 + 3, &big).unwrap();
    expected[8192 + 3..8192 + 3 + big.len()].copy_from_slice(&big);
    let small = pattern(100, 99);
    media.write(5, &small).unwrap();
    expected[5..105].copy_from_slice(&small);
    media.store_u64(128, 0x0123_4567_89ab_cdef).unwrap();
    expected[128..136].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    // Overlapping move (memmove semantics) and a large disjoint copy.
    media.copy_within(8192 + 3, 8192 + 3 + 1000, 5000).unwrap();
    expected.copy_within(8192 + 3..8192 + 3 + 5000, 8192 + 3 + 1000);
    media.copy_within(8192, 200_000, 30_000).unwrap();
    expected.copy_within(8192..8192 + 30_000, 200_000);
    media.write_zeroes(9000, 3000).unwrap();
    expected[9000..12000].fill(0);
    media.write_zeroes(20, 10).unwrap();
    expected[20..30].fill(0);
    media.persist(0, len as u64).unwrap();
    media.fence().unwrap();
    expected
}

fn read_all(media: &MmapMedia, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    media.read(0, &mut buf).unwrap();
    buf
}

#[test]
fn image_file_round_trip_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    let size = 4 * MIB;
    let media = MmapMedia::create_with(&path, size, None).unwrap();
    assert_eq!(media.len(), size);
    assert_eq!(media.kind(), MediaKind::File);
    assert_eq!(media.flush_method(), FlushMethod::Msync);
    let expected = exercise_writes(&media, size as usize);
    assert_eq!(read_all(&media, size as usize), expected);
    assert_eq!(media.load_u64(128).unwrap(), 0x0123_4567_89ab_cdef);
    let counters = media.counters();
    assert!(counters.msyncs >= 1 && counters.fences == 1);
    assert_eq!(counters.bytes_persisted, size);
    drop(media);

    let reopened = MmapMedia::open_with(&path, OpenMode::ReadOnly, None).unwrap();
    assert_eq!(read_all(&reopened, size as usize), expected);
    // The bytes are in the file itself, not only in this process's mapping.
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn dev_shm_round_trip_and_map_sync_fallback_is_detected_as_file_and_logged() {
    install_logger();
    let dir = shm_dir();
    let path = dir.path().join("shm-image");
    let size = MIB;
    let media = MmapMedia::create_with(&path, size, None).unwrap();
    assert_eq!(media.kind(), MediaKind::File, "tmpfs refuses MAP_SYNC");
    assert!(media.describe().contains(&path.display().to_string()));
    assert!(media.describe().contains("msync"), "{}", media.describe());
    let expected = exercise_writes(&media, size as usize);
    drop(media);
    let reopened = MmapMedia::open_with(&path, OpenMode::ReadWrite, None).unwrap();
    assert_eq!(read_all(&reopened, size as usize), expected);

    let notices = logs_mentioning(&path.display().to_string());
    assert!(
        notices
            .iter()
            .any(|line| line.starts_with("INFO") && line.contains("MAP_SYNC refused")),
        "{notices:?}"
    );
    assert!(
        notices.iter().any(|line| line.contains("opened")),
        "{notices:?}"
    );
}

#[test]
fn accesses_outside_the_media_or_misaligned_are_errors() {
    let dir = shm_dir();
    let media = MmapMedia::create_with(&dir.path().join("img"), 64 * 1024, None).unwrap();
    let size = media.len();
    let oob = |result: Result<(), MediaError>| {
        assert!(
            matches!(result, Err(MediaError::OutOfBounds { .. })),
            "{result:?}"
        )
    };
    oob(media.read(size - 1, &mut [0, 0]));
    oob(media.read(u64::MAX, &mut [0]));
    oob(media.write(size, &[1]));
    oob(media.write(u64::MAX - 1, &[1, 2, 3]));
    oob(media.write_zeroes(size - 10, 11));
    oob(media.copy_within(0, size - 10, 11));
    oob(media.copy_within(size - 10, 0, 11));
    oob(media.store_u64(size, 1));
    oob(media.load_u64(size).map(|_| ()));
    oob(media.persist(size - 100, 101));
    oob(media.with_slice(size - 1, 2, &mut |_| panic!("must not be called")));
    assert!(matches!(
        media.store_u64(12, 1),
        Err(MediaError::Misaligned(12))
    ));
    assert!(matches!(media.load_u64(3), Err(MediaError::Misaligned(3))));
    // Exactly at the end is fine.
    media.write(size - 8, &[1; 8]).unwrap();
    media.store_u64(size - 8, 7).unwrap();
    media.write(size, &[]).unwrap();
    assert_eq!(media.counters().bytes_stored, 16);
}

#[test]
fn read_only_media_refuses_every_mutation_and_keeps_the_bytes() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let writer = MmapMedia::create_with(&path, 64 * 1024, None).unwrap();
    writer.write(0, b"cowdax").unwrap();
    writer.persist(0, 6).unwrap();
    writer.fence().unwrap();
    drop(writer);

    let media = MmapMedia::open_with(&path, OpenMode::ReadOnly, None).unwrap();
    assert_eq!(media.mode(), OpenMode::ReadOnly);
    let read_only = |result: Result<(), MediaError>, operation: &str| match result {
        Err(MediaError::ReadOnly { operation: op }) => assert_eq!(op, operation),
        other => panic!("{operation}: {other:?}"),
    };
    read_only(media.write(0, b"X"), "write");
    read_only(media.write_zeroes(0, 1), "write_zeroes");
    read_only(media.copy_within(0, 100, 6), "copy_within");
    read_only(media.store_u64(0, 1), "store_u64");
    read_only(media.persist(0, 6), "persist");
    let message = media.write(0, b"X").unwrap_err().to_string();
    assert!(message.contains("read-only"), "{message}");

    let mut buf = [0u8; 6];
    media.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"cowdax");
    let mut seen = Vec::new();
    media
        .with_slice(0, 6, &mut |bytes| seen.extend_from_slice(bytes))
        .unwrap();
    assert_eq!(seen, b"cowdax");
    media.fence().unwrap();
    assert_eq!(media.counters().bytes_stored, 0);
    assert_eq!(&std::fs::read(&path).unwrap()[..6], b"cowdax");
}

#[test]
fn persist_records_page_ranges_in_order_and_fence_msyncs_each_once() {
    let dir = shm_dir();
    let page = page();
    let media = MmapMedia::create_with(&dir.path().join("img"), 16 * page, None).unwrap();
    media.write(0, &vec![1; 8 * page as usize]).unwrap();

    media.persist(5 * page + 10, 20).unwrap(); // page 5
    media.persist(page + 100, 50).unwrap(); // page 1: before page 5 in memory, after it in order
    media.persist(2 * page, page).unwrap(); // page 2: adjacent to the newest, merged
    media.persist(page + 5, 10).unwrap(); // inside the newest: no new entry
    media.persist(5 * page, 8).unwrap(); // page 5 again: not the newest, so appended
    assert_eq!(
        media.pending_sync_ranges(),
        vec![(5 * page, page), (page, 2 * page), (5 * page, page)]
    );
    let before = media.counters();
    assert_eq!(before.msyncs, 0, "persist alone does not sync");
    media.fence().unwrap();
    let work = media.counters().since(&before);
    assert_eq!((work.msyncs, work.fences), (3, 1));
    assert!(media.pending_sync_ranges().is_empty());

    // A fence with nothing persisted issues no msync.
    media.fence().unwrap();
    assert_eq!(media.counters().since(&before).msyncs, 3);
}

#[test]
fn many_scattered_persists_are_synced_before_the_list_grows_unbounded() {
    let dir = shm_dir();
    let page = page();
    let media = MmapMedia::create_with(&dir.path().join("img"), 256 * page, None).unwrap();
    // Every other page: nothing merges.
    for index in 0..100u64 {
        media.write(index * 2 * page, &[index as u8]).unwrap();
        media.persist(index * 2 * page, 1).unwrap();
    }
    let pending = media.pending_sync_ranges().len();
    let synced_early = media.counters().msyncs;
    assert!(pending < 64, "list bounded: {pending} entries");
    assert_eq!(synced_early + pending as u64, 100);
    media.fence().unwrap();
    assert_eq!(media.counters().msyncs, 100);
}

#[test]
fn concurrent_persist_and_fence_from_many_threads_sync_everything() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let page = page();
    let media = MmapMedia::create_with(&path, 256 * page, None).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let media = &media;
            scope.spawn(move || {
                for round in 0..50u64 {
                    let off = (thread * 64 + round) * page;
                    media
                        .write(off, &(thread * 1000 + round).to_le_bytes())
                        .unwrap();
                    media.persist(off, 8).unwrap();
                    media.fence().unwrap();
                }
            });
        }
    });
    assert!(media.pending_sync_ranges().is_empty());
    assert_eq!(media.counters().fences, 200);
    drop(media);
    let bytes = std::fs::read(&path).unwrap();
    for thread in 0..4u64 {
        for round in 0..50u64 {
            let off = ((thread * 64 + round) * page) as usize;
            let value = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
            assert_eq!(value, thread * 1000 + round);
        }
    }
}

#[test]
fn every_forced_flush_path_runs_and_the_data_survives_reopening() {
    let dir = shm_dir();
    let mut exercised = Vec::new();
    for method in [
        FlushMethod::Clwb,
        FlushMethod::Clflushopt,
        FlushMethod::Clflush,
        FlushMethod::Msync,
    ] {
        if !method.is_supported() {
            eprintln!("SKIPPED flush path {method}: this CPU does not support it");
            continue;
        }
        let path = dir.path().join(format!("img-{method}"));
        let size = MIB as usize;
        let media = MmapMedia::create_with(&path, size as u64, Some(method)).unwrap();
        assert_eq!(media.flush_method(), method);
        assert!(media.describe().contains(method.name()));
        let expected = exercise_writes(&media, size);
        let counters = media.counters();
        // persist(0, size) touches size / 64 lines: flushed on the CPU
        // paths, counted as "would have been" on the msync path.
        assert_eq!(counters.lines_flushed, size as u64 / 64, "{method}");
        if method.is_cpu_flush() {
            assert_eq!(counters.msyncs, 0, "{method}");
        } else {
            assert_eq!(counters.msyncs, 1, "one merged range");
        }
        assert_eq!(counters.fences, 1);
        drop(media);
        let reopened = MmapMedia::open_with(&path, OpenMode::ReadOnly, None).unwrap();
        assert_eq!(read_all(&reopened, size), expected, "{method}");
        exercised.push(method);
    }
    assert!(exercised.contains(&FlushMethod::Msync));
    if cfg!(target_arch = "x86_64") {
        assert!(
            exercised.contains(&FlushMethod::Clflush),
            "baseline on x86_64"
        );
    }
}

#[test]
fn lock_refuses_a_second_writer_and_a_reader_beside_a_writer() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let writer = MmapMedia::create_with(&path, 64 * 1024, None).unwrap();
    for mode in [OpenMode::ReadWrite, OpenMode::ReadOnly] {
        match MmapMedia::open_with(&path, mode, None) {
            Err(err @ MediaError::InUse { .. }) => {
                assert!(err.to_string().contains("in use by another cowdax process"))
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
    drop(writer);
    let reader_one = MmapMedia::open_with(&path, OpenMode::ReadOnly, None).unwrap();
    let reader_two = MmapMedia::open_with(&path, OpenMode::ReadOnly, None).unwrap();
    assert!(matches!(
        MmapMedia::open_with(&path, OpenMode::ReadWrite, None),
        Err(MediaError::InUse { .. })
    ));
    drop((reader_one, reader_two));
    MmapMedia::open_with(&path, OpenMode::ReadWrite, None).unwrap();
}

#[test]
fn lock_also_excludes_another_process() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let _writer = MmapMedia::create_with(&path, 64 * 1024, None).unwrap();
    // flock(1) from util-linux, as a stand-in for a second cowdax process.
    let status = Command::new("flock")
        .args(["--nonblock", "--shared"])
        .arg(&path)
        .arg("true")
        .status();
    match status {
        Ok(status) => assert_eq!(status.code(), Some(1), "flock(1) must fail to lock"),
        Err(err) => eprintln!("SKIPPED second-process lock check: flock(1) unavailable: {err}"),
    }
}

#[test]
fn create_refuses_an_existing_path_and_open_refuses_unmappable_targets() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    std::fs::write(&path, b"precious").unwrap();
    let err = MmapMedia::create_with(&path, MIB, None).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");

    assert!(MmapMedia::create_with(&dir.path().join("zero"), 0, None).is_err());
    assert!(!dir.path().join("zero").exists());

    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let err = MmapMedia::open_with(&empty, OpenMode::ReadOnly, None).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    let err = MmapMedia::open_with(dir.path(), OpenMode::ReadOnly, None).unwrap_err();
    assert!(matches!(err, MediaError::Open { .. }), "{err}");
    let err = MmapMedia::open_with(Path::new("/dev/null"), OpenMode::ReadOnly, None).unwrap_err();
    assert!(err.to_string().contains("not a devdax"), "{err}");
    assert!(matches!(
        MmapMedia::open_with(&dir.path().join("missing"), OpenMode::ReadOnly, None),
        Err(MediaError::Io { .. })
    ));
}

#[test]
fn create_too_large_for_the_filesystem_fails_and_leaves_nothing_behind() {
    let dir = shm_dir();
    let path = dir.path().join("huge");
    // 1 PiB: tmpfs accepts the length but cannot reserve the blocks.
    let err = MmapMedia::create_with(&path, 1 << 50, None).unwrap_err();
    assert!(matches!(err, MediaError::Io { .. }), "{err}");
    assert!(!path.exists(), "the failed image is removed");
}

#[test]
fn created_image_is_fully_allocated_not_sparse() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let _media = MmapMedia::create_with(&path, 8 * MIB, None).unwrap();
    let metadata = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(metadata.len(), 8 * MIB);
    assert!(
        metadata.blocks() * 512 >= 8 * MIB,
        "blocks {}",
        metadata.blocks()
    );
}

#[test]
fn with_slice_lends_the_current_bytes() {
    let dir = shm_dir();
    let media = MmapMedia::create_with(&dir.path().join("img"), 64 * 1024, None).unwrap();
    media.write(4000, &pattern(200, 3)).unwrap();
    let mut lent = Vec::new();
    media
        .with_slice(4000, 200, &mut |bytes| lent.extend_from_slice(bytes))
        .unwrap();
    assert_eq!(lent, pattern(200, 3));
    let mut calls = 0;
    media
        .with_slice(0, 0, &mut |bytes| {
            calls += 1;
            assert!(bytes.is_empty());
        })
        .unwrap();
    assert_eq!(calls, 1);
}

/// A loop device attached to a file; detached on drop.
struct LoopDevice {
    device: PathBuf,
}

impl LoopDevice {
    /// `None` (with a visible reason) only when losetup is not installed.
    fn attach(backing: &Path) -> Option<LoopDevice> {
        let output = match Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing)
            .output()
        {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED block device test: losetup is not installed");
                return None;
            }
            Err(err) => panic!("running losetup: {err}"),
        };
        assert!(
            output.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let device = String::from_utf8(output.stdout).unwrap().trim().to_string();
        Some(LoopDevice {
            device: PathBuf::from(device),
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let status = Command::new("losetup").arg("-d").arg(&self.device).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("could not detach {}: {status:?}", self.device.display());
        }
    }
}

#[test]
fn loop_block_device_is_detected_sized_by_ioctl_and_persists_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let size = 8 * MIB;
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(size)
        .unwrap();
    let Some(loop_device) = LoopDevice::attach(&backing) else {
        return;
    };
    let expected = {
        let media = MmapMedia::open_with(&loop_device.device, OpenMode::ReadWrite, None).unwrap();
        assert_eq!(media.kind(), MediaKind::BlockDevice);
        assert_eq!(media.len(), size, "BLKGETSIZE64");
        assert_eq!(media.flush_method(), FlushMethod::Msync);
        // The exclusive claim and the flock both refuse a second writer.
        assert!(matches!(
            MmapMedia::open_with(&loop_device.device, OpenMode::ReadWrite, None),
            Err(MediaError::InUse { .. })
        ));
        let expected = exercise_writes(&media, size as usize);
        assert!(media.counters().msyncs >= 1);
        assert!(!detect::is_mounted(&loop_device.device).unwrap());
        assert!(!detect::is_mounted(&backing).unwrap());
        expected
    };
    drop(loop_device);
    // msync wrote through the loop device into the backing file.
    assert_eq!(std::fs::read(&backing).unwrap(), expected);
}

/// Runs `cmd`, returning false (with a visible reason) when it is missing.
fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> bool {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            true
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: {program} is not installed");
            false
        }
        Err(err) => panic!("{program}: {err}"),
    }
}

#[test]
fn mounted_loop_device_and_its_image_are_reported_mounted_and_refused() {
    install_logger();
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("ext4.img");
    let mount_point = dir.path().join("mnt");
    std::fs::create_dir(&mount_point).unwrap();
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let Some(loop_device) = LoopDevice::attach(&backing) else {
        return;
    };
    if !run_tool(
        "mkfs.ext4",
        &["-q".as_ref(), loop_device.device.as_os_str()],
    ) {
        return;
    }
    // dax=inode mounts on a device without DAX support (dax=always does not),
    // which lets us see MAP_SYNC refused on a filesystem mounted with dax.
    run_tool(
        "mount",
        &[
            "-o".as_ref(),
            "dax=inode".as_ref(),
            loop_device.device.as_os_str(),
            mount_point.as_os_str(),
        ],
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let unmount = Unmount(&mount_point);

    let found = detect::find_mount(&loop_device.device).unwrap().unwrap();
    assert_eq!(
        found.mount_point,
        std::fs::canonicalize(&mount_point).unwrap()
    );
    assert!(found.has_dax_option());
    assert!(
        detect::is_mounted(&backing).unwrap(),
        "via the loop backing file"
    );
    assert!(matches!(
        MmapMedia::open_with(&loop_device.device, OpenMode::ReadWrite, None),
        Err(MediaError::InUse { .. })
    ));

    let inner = mount_point.join("inner.img");
    let media = MmapMedia::create_with(&inner, MIB, None).unwrap();
    assert_eq!(media.kind(), MediaKind::File);
    let expected = exercise_writes(&media, MIB as usize);
    drop(media);
    assert_eq!(std::fs::read(&inner).unwrap(), expected);
    let warnings = logs_mentioning(&inner.display().to_string());
    assert!(
        warnings
            .iter()
            .any(|line| line.starts_with("WARN") && line.contains("mounted with dax")),
        "{warnings:?}"
    );
    drop(unmount);
    drop(loop_device);
}

/// The environment variable is read by `open`/`create`; it is set only in a
/// child process (setting it here would race with other test threads).
#[test]
fn force_flush_environment_variable_selects_or_rejects_the_method() {
    let exe = std::env::current_exe().unwrap();
    for value in ["clflush", "MSYNC", "bogus"] {
        let output = Command::new(&exe)
            .args([
                "--exact",
                "env_child_open_uses_the_forced_flush_method",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FORCE_FLUSH_ENV, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{value}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "{value}: child did not run: {stdout}"
        );
    }
}

/// Run by the test above with `COWDAX_FORCE_FLUSH` set; without it, checks
/// that automatic selection picks msync for a page-cache file.
#[test]
#[ignore = "run in a child process by force_flush_environment_variable_selects_or_rejects_the_method"]
fn env_child_open_uses_the_forced_flush_method() {
    let dir = shm_dir();
    let path = dir.path().join("img");
    let forced = std::env::var(FORCE_FLUSH_ENV).ok();
    let result = MmapMedia::create(&path, 64 * 1024);
    match forced.as_deref().map(FlushMethod::parse) {
        None => assert_eq!(result.unwrap().flush_method(), FlushMethod::Msync),
        Some(Some(method)) => {
            let media = result.unwrap();
            assert_eq!(media.flush_method(), method);
            assert!(media.describe().contains(FORCE_FLUSH_ENV));
            media.write(0, &[1; 512]).unwrap();
            media.persist(0, 512).unwrap();
            media.fence().unwrap();
            drop(media);
            let reopened = MmapMedia::open(&path, OpenMode::ReadOnly).unwrap();
            assert_eq!(reopened.flush_method(), method);
        }
        Some(None) => {
            let err = result.unwrap_err();
            assert!(matches!(err, MediaError::Config(_)), "{err}");
            assert!(err.to_string().contains(FORCE_FLUSH_ENV), "{err}");
            assert!(!path.exists(), "nothing is created when the setting is bad");
        }
    }
}
