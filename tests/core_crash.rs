//! Crash-state enumeration over SimMedia for every operation type.
//!
//! For each scenario: build a state, make it durable, then run one
//! operation with a fence hook that captures the crash point at every fence
//! (the state just before the fence takes effect: durable image + pending
//! cache lines). From each crash point, crash images are built from subsets
//! of the pending lines (all subsets when few, sampled otherwise). Every
//! image must open, scrub clean, and show either the state before the
//! operation or the state after it (all-or-nothing; completed operations
//! are always there).

mod core_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use core_support::{assert_clean, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::acl::{self, Acl, AclEntry};
use cowdax::fs::{
    FallocMode, FileKind, Fs, Ino, OpenOptions, Privileged, RenameFlags, SetAttr, XattrSetMode,
    ROOT_INO,
};
use cowdax::media::sim::CrashPoint;
use cowdax::media::SimMedia;

const BS: u64 = 4096;
const IMAGE_BLOCKS: u64 = 512;
/// Exhaustive below this many pending lines, else sampled.
const MAX_EXHAUSTIVE_LINES: usize = 8;
const SAMPLES: usize = 12;

/// Everything a user can observe, by path.
type Digest = BTreeMap<Vec<u8>, String>;

fn digest(fs: &Fs, mask_contents_of: Option<&[u8]>) -> Digest {
    let mut out = Digest::new();
    let mut stack: Vec<(Ino, Vec<u8>)> = vec![(ROOT_INO, b"/".to_vec())];
    while let Some((dir, path)) = stack.pop() {
        let attr = fs.getattr(dir).expect("getattr dir");
        out.insert(path.clone(), format!("dir nlink={}", attr.nlink));
        let mut entries = Vec::new();
        fs.readdir(dir, 2, &mut |e| {
            entries.push((e.name.clone(), e.ino, e.kind));
            true
        })
        .expect("readdir");
        for (name, ino, kind) in entries {
            let mut p = path.clone();
            if p.len() > 1 {
                p.push(b'/');
            }
            p.extend_from_slice(&name);
            let attr = fs.getattr(ino).expect("getattr");
            let mut xattrs = Vec::new();
            for n in fs.listxattr(ino).expect("listxattr") {
                let v = fs.getxattr(ino, &n).expect("getxattr");
                xattrs.push((n, v));
            }
            match kind {
                FileKind::Directory => stack.push((ino, p)),
                FileKind::Regular => {
                    let data = if mask_contents_of == Some(&p[..]) {
                        Vec::new()
                    } else {
                        fs.read(ino, 0, 1 << 24).expect("read")
                    };
                    out.insert(
                        p,
                        format!(
                            "file ino={ino} size={} nlink={} xattrs={xattrs:?} data={:x?}",
                            attr.size,
                            attr.nlink,
                            crc(&data)
                        ),
                    );
                }
                FileKind::Symlink => {
                    let t = fs.readlink(ino).expect("readlink");
                    out.insert(p, format!("symlink {t:?}"));
                }
                other => {
                    out.insert(p, format!("{other:?}"));
                }
            }
        }
    }
    out
}

fn crc(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a test.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^ data.len() as u64
}

fn create(fs: &Fs, parent: Ino, name: &[u8]) -> Ino {
    fs.mknod(parent, name, libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create")
        .ino
}

fn lookup(fs: &Fs, name: &[u8]) -> Ino {
    fs.lookup(ROOT_INO, name).expect("lookup").ino
}

/// Recover every crash image of the captured points; each must scrub clean
/// and match one of `allowed`. Returns the number of states explored.
fn check_points(
    points: &[(usize, CrashPoint)],
    allowed: &dyn Fn(usize) -> Vec<Digest>,
    mask: Option<&[u8]>,
) -> usize {
    let mut explored = 0;
    for (completed, point) in points {
        let allowed = allowed(*completed);
        for subset in point.subsets(MAX_EXHAUSTIVE_LINES, SAMPLES, 0x5eed + *completed as u64) {
            let image = point.image(subset.iter().copied());
            let sim = SimMedia::from_image(image);
            let fs = Fs::open(Arc::new(sim), OpenOptions::default()).unwrap_or_else(|e| {
                panic!(
                    "crash image at fence {} does not open: {e}",
                    point.fence_index
                )
            });
            assert_clean(&fs);
            let d = digest(&fs, mask);
            assert!(
                allowed.contains(&d),
                "fence {} (after {completed} ops): recovered state is neither before nor after:\n{d:#?}\nallowed:\n{allowed:#?}",
                point.fence_index
            );
            explored += 1;
        }
    }
    explored
}

/// Run `setup`, make it durable, then run `op` under the fence hook and
/// check every crash state. `mask` names a file whose contents may be torn
/// (in-place data writes are not atomic, as on any filesystem).
fn scenario(name: &str, setup: &dyn Fn(&Fs), op: &dyn Fn(&Fs), mask: Option<&[u8]>) {
    let sim = formatted(IMAGE_BLOCKS, Some(64 * 1024));
    let fs = open(&sim);
    setup(&fs);
    fs.fsync(0, false).expect("sync");
    let before = digest(&fs, mask);
    let points: Arc<Mutex<Vec<(usize, CrashPoint)>>> = Arc::default();
    let sink = points.clone();
    sim.set_fence_hook(Some(Box::new(move |cp: &CrashPoint| {
        sink.lock().expect("points").push((0, cp.clone()));
    })));
    op(&fs);
    sim.set_fence_hook(None);
    assert_clean(&fs);
    let after = digest(&fs, mask);
    let points = points.lock().expect("points").clone();
    assert!(!points.is_empty(), "{name}: the operation fenced nothing");
    let mut explored = check_points(&points, &|_| vec![before.clone(), after.clone()], mask);
    // The state right after the operation (no crash) must also recover.
    let image = sim.crash_point().image(0..sim.crash_point().pending.len());
    let fs2 = Fs::open(
        Arc::new(SimMedia::from_image(image)),
        OpenOptions::default(),
    )
    .expect("open after op");
    assert_clean(&fs2);
    assert_eq!(digest(&fs2, mask), after, "{name}: completed op lost");
    explored += 1;
    eprintln!(
        "{name}: {} fences, {explored} crash states explored",
        points.len()
    );
}

fn shared_pair(fs: &Fs) {
    let a = create(fs, ROOT_INO, b"a");
    fs.write(a, 0, &pattern(1, 3 * BS as usize + 100))
        .expect("write");
    let b = create(fs, ROOT_INO, b"b");
    fs.clone_range(a, 0, b, 0, 0).expect("clone");
}

#[test]
fn create_is_atomic_under_crashes() {
    scenario(
        "create",
        &|_| {},
        &|fs| {
            create(fs, ROOT_INO, b"new");
        },
        None,
    );
}

#[test]
fn mkdir_and_symlink_are_atomic_under_crashes() {
    scenario(
        "mkdir",
        &|_| {},
        &|fs| {
            fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
        },
        None,
    );
    scenario(
        "symlink",
        &|_| {},
        &|fs| {
            fs.symlink(ROOT_INO, b"s", b"target", ROOT_CREDS)
                .expect("symlink");
        },
        None,
    );
}

/// The inherited access ACL is stored in the create's transaction: no
/// crash state shows the new file without it (its mode comes from the ACL,
/// so without it the group bits would grant what the ACL's mask limits).
#[test]
fn create_under_a_default_acl_is_atomic_with_its_inherited_acl_under_crashes() {
    let default = Acl {
        entries: [
            (acl::TAG_USER_OBJ, 7, 0),
            (acl::TAG_USER, 6, 1000),
            (acl::TAG_GROUP_OBJ, 0, 0),
            (acl::TAG_MASK, 6, 0),
            (acl::TAG_OTHER, 0, 0),
        ]
        .iter()
        .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
        .collect(),
    };
    scenario(
        "create under a default ACL",
        &|fs| {
            let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
            fs.setxattr_as(
                d.ino,
                acl::DEFAULT_XATTR,
                &default.to_bytes(),
                XattrSetMode::Any,
                &Privileged,
            )
            .expect("set default ACL");
        },
        &|fs| {
            let d = lookup(fs, b"d");
            let f = fs
                .create_in(d, b"f", libc::S_IFREG | 0o644, 0o022, 0, ROOT_CREDS)
                .expect("create");
            assert_eq!(f.perm, 0o640, "mode from the ACL, not the umask");
            let access = fs.getxattr(f.ino, acl::ACCESS_XATTR).expect("access ACL");
            assert_eq!(Acl::parse(&access).expect("valid").permission_bits(), 0o640);
        },
        None,
    );
}

#[test]
fn in_place_write_keeps_metadata_consistent_under_crashes() {
    scenario(
        "write in place",
        &|fs| {
            let f = create(fs, ROOT_INO, b"f");
            fs.write(f, 0, &pattern(2, 2 * BS as usize)).expect("write");
        },
        &|fs| {
            let f = lookup(fs, b"f");
            fs.write(f, 100, &pattern(3, 5000)).expect("overwrite");
            fs.fsync(f, false).expect("fsync");
        },
        Some(b"/f"),
    );
}

#[test]
fn allocating_write_is_atomic_under_crashes() {
    scenario(
        "allocating write",
        &|fs| {
            let f = create(fs, ROOT_INO, b"f");
            fs.write(f, 0, &pattern(4, 1000)).expect("write");
        },
        &|fs| {
            let f = lookup(fs, b"f");
            fs.write(f, 3000, &pattern(5, 3 * BS as usize))
                .expect("append");
        },
        None,
    );
}

#[test]
fn cow_write_is_atomic_under_crashes() {
    scenario(
        "cow write",
        &shared_pair,
        &|fs| {
            let b = lookup(fs, b"b");
            fs.write(b, BS + 7, &pattern(6, 2 * BS as usize))
                .expect("cow");
        },
        None,
    );
}

#[test]
fn clone_and_dedupe_are_atomic_under_crashes() {
    scenario(
        "clone",
        &|fs| {
            let a = create(fs, ROOT_INO, b"a");
            fs.write(a, 0, &pattern(7, 4 * BS as usize)).expect("write");
            let b = create(fs, ROOT_INO, b"b");
            fs.write(b, 0, &pattern(8, BS as usize)).expect("write");
        },
        &|fs| {
            let (a, b) = (lookup(fs, b"a"), lookup(fs, b"b"));
            fs.clone_range(a, BS, b, 2 * BS, 2 * BS).expect("clone");
        },
        None,
    );
    scenario(
        "dedupe",
        &|fs| {
            let a = create(fs, ROOT_INO, b"a");
            fs.write(a, 0, &pattern(9, 4 * BS as usize)).expect("write");
            let b = create(fs, ROOT_INO, b"b");
            fs.write(b, 0, &pattern(9, 4 * BS as usize)).expect("write");
        },
        &|fs| {
            let (a, b) = (lookup(fs, b"a"), lookup(fs, b"b"));
            fs.dedupe_range(a, 0, b, 0, 4 * BS).expect("dedupe");
        },
        None,
    );
}

#[test]
fn truncate_punch_and_unlink_of_shared_files_are_atomic_under_crashes() {
    scenario(
        "truncate shared",
        &shared_pair,
        &|fs| {
            let a = lookup(fs, b"a");
            fs.setattr(
                a,
                &SetAttr {
                    size: Some(BS + 5),
                    ..SetAttr::default()
                },
            )
            .expect("truncate");
        },
        None,
    );
    scenario(
        "punch shared",
        &shared_pair,
        &|fs| {
            let b = lookup(fs, b"b");
            fs.fallocate(b, 100, 2 * BS, FallocMode::PunchHole)
                .expect("punch");
        },
        None,
    );
    scenario(
        "unlink shared",
        &shared_pair,
        &|fs| fs.unlink(ROOT_INO, b"a").expect("unlink"),
        None,
    );
}

#[test]
fn rename_and_xattr_are_atomic_under_crashes() {
    scenario(
        "rename replacing",
        &|fs| {
            let d = fs
                .mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS)
                .expect("mkdir")
                .ino;
            let x = create(fs, ROOT_INO, b"x");
            fs.write(x, 0, b"xx").expect("write");
            create(fs, d, b"y");
        },
        &|fs| {
            let d = lookup(fs, b"d");
            fs.rename(ROOT_INO, b"x", d, b"y", RenameFlags::default())
                .expect("rename");
        },
        None,
    );
    scenario(
        "xattr",
        &|fs| {
            create(fs, ROOT_INO, b"f");
        },
        &|fs| {
            let f = lookup(fs, b"f");
            fs.setxattr(f, b"user.k", &[7; 300], XattrSetMode::Any)
                .expect("setxattr");
        },
        None,
    );
}

/// Many small operations with a small journal so checkpoints happen in
/// between: a crash anywhere recovers to the state after the operations
/// acknowledged so far (or one more).
#[test]
fn checkpoints_during_load_lose_no_acknowledged_operation() {
    let sim = formatted(IMAGE_BLOCKS, Some(16 * 1024));
    let fs = open(&sim);
    let completed = Arc::new(AtomicUsize::new(0));
    let points: Arc<Mutex<Vec<(usize, CrashPoint)>>> = Arc::default();
    let (sink, count) = (points.clone(), completed.clone());
    let mut digests = vec![digest(&fs, None)];
    sim.set_fence_hook(Some(Box::new(move |cp: &CrashPoint| {
        sink.lock()
            .expect("points")
            .push((count.load(Ordering::SeqCst), cp.clone()));
    })));
    const OPS: usize = 150;
    for i in 0..OPS {
        let file = format!("f{}", i / 3).into_bytes();
        match i % 3 {
            0 => {
                create(&fs, ROOT_INO, &file);
            }
            1 => {
                let f = lookup(&fs, &file);
                fs.write(f, 0, &pattern(i as u64, 700)).expect("write");
            }
            _ if (i / 3) % 4 == 1 => {
                fs.unlink(ROOT_INO, format!("f{}", i / 3 - 1).as_bytes())
                    .expect("unlink");
            }
            _ => {
                let f = lookup(&fs, &file);
                fs.setxattr(f, b"user.n", &[i as u8; 40], XattrSetMode::Any)
                    .expect("setxattr");
            }
        }
        completed.fetch_add(1, Ordering::SeqCst);
        sim.set_fence_hook(None);
        digests.push(digest(&fs, None));
        let (sink, count) = (points.clone(), completed.clone());
        sim.set_fence_hook(Some(Box::new(move |cp: &CrashPoint| {
            sink.lock()
                .expect("points")
                .push((count.load(Ordering::SeqCst), cp.clone()));
        })));
    }
    sim.set_fence_hook(None);
    let points = points.lock().expect("points").clone();
    // Sample the fences (checkpoint fences included) to bound run time.
    let sampled: Vec<(usize, CrashPoint)> = points.iter().step_by(3).cloned().collect();
    let explored = check_points(
        &sampled,
        &|done| vec![digests[done].clone(), digests[(done + 1).min(OPS)].clone()],
        None,
    );
    assert_clean(&fs);
    assert!(
        fs.usage().expect("usage").metadata_bytes > 0,
        "the load wrote no checkpoint: the test would not cover one"
    );
    eprintln!(
        "checkpoint during load: {} fences, {explored} crash states explored",
        points.len()
    );
}

/// A crash point tagged with (operations completed, operations fsynced).
type SyncedPoint = ((usize, usize), CrashPoint);

/// Page-cache media (group commit): commits are not fenced, so a crash may
/// lose the tail of the journal — but recovery is always the state after a
/// prefix of the operations, and that prefix includes every operation
/// acknowledged by an fsync.
#[test]
fn group_commit_recovers_a_prefix_that_includes_every_fsynced_operation() {
    let sim = formatted(IMAGE_BLOCKS, Some(32 * 1024));
    let fs = Fs::open(Arc::new(sim.as_page_cache()), OpenOptions::default()).expect("open");
    let progress = Arc::new(Mutex::new((0usize, 0usize))); // (completed, fsynced)
    let points: Arc<Mutex<Vec<SyncedPoint>>> = Arc::default();
    let (sink, state) = (points.clone(), progress.clone());
    let mut digests = vec![digest(&fs, None)];
    const OPS: usize = 48;
    for i in 0..OPS {
        let (sink2, state2) = (sink.clone(), state.clone());
        sim.set_fence_hook(Some(Box::new(move |cp: &CrashPoint| {
            let at = *state2.lock().expect("state");
            sink2.lock().expect("points").push((at, cp.clone()));
        })));
        let n = i / 3;
        match i % 3 {
            0 => {
                create(&fs, ROOT_INO, format!("f{n}").as_bytes());
            }
            1 => {
                let f = lookup(&fs, format!("f{n}").as_bytes());
                fs.write(f, 0, &pattern(i as u64, 5000)).expect("write");
            }
            _ => fs
                .rename(
                    ROOT_INO,
                    format!("f{n}").as_bytes(),
                    ROOT_INO,
                    format!("g{n}").as_bytes(),
                    RenameFlags::default(),
                )
                .expect("rename"),
        }
        let synced = i % 4 == 3;
        if synced {
            fs.fsync(0, false).expect("fsync");
        }
        sim.set_fence_hook(None);
        let mut st = progress.lock().expect("state");
        st.0 = i + 1;
        if synced {
            st.1 = i + 1;
        }
        drop(st);
        digests.push(digest(&fs, None));
    }
    let points = points.lock().expect("points").clone();
    let mut explored = 0;
    for ((completed, synced), point) in points.iter().step_by(2) {
        for subset in point.subsets(MAX_EXHAUSTIVE_LINES, 6, 0xfeed + *completed as u64) {
            let image = point.image(subset.iter().copied());
            let rec = Fs::open(
                Arc::new(SimMedia::from_image(image)),
                OpenOptions::default(),
            )
            .expect("crash image opens");
            assert_clean(&rec);
            let d = digest(&rec, None);
            let hi = (*completed + 1).min(OPS);
            assert!(
                digests[*synced..=hi].contains(&d),
                "fence {}: state is not a prefix between {synced} (fsynced) and {hi} ops",
                point.fence_index
            );
            explored += 1;
        }
    }
    assert_clean(&fs);
    eprintln!(
        "group commit: {} fences, {explored} crash states explored",
        points.len()
    );
}

/// File handles name an inode by (number, generation): after a crash, an
/// inode created and deleted since the last checkpoint (known only from the
/// journal) must not lend its number and generation to a new inode, or a
/// stale handle would open the newcomer.
#[test]
fn inode_numbers_and_generations_of_journaled_deletes_are_not_reused_after_a_crash() {
    let sim = formatted(IMAGE_BLOCKS, None);
    let fs = open(&sim);
    let keep = fs
        .mknod(ROOT_INO, b"keep", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create keep");
    let gone = fs
        .mknod(ROOT_INO, b"gone", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create gone");
    fs.unlink(ROOT_INO, b"gone").expect("unlink gone");
    // Crash: the durable image as it is, no unmount, no checkpoint.
    let image = sim.crash_point().image(0..sim.crash_point().pending.len());
    drop(fs);
    let fs2 = Fs::open(
        Arc::new(SimMedia::from_image(image)),
        OpenOptions::default(),
    )
    .expect("open after crash");
    assert!(fs2.getattr(keep.ino).is_ok());
    let newcomer = fs2
        .mknod(ROOT_INO, b"new", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create new");
    assert!(newcomer.ino > gone.ino, "inode {} reused", gone.ino);
    assert!(
        newcomer.generation > gone.generation,
        "generation {} reused",
        gone.generation
    );
    assert_clean(&fs2);
}
