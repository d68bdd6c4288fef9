//! Model-based property test: random operation sequences run against the
//! core and against a plain in-memory model (directory tree + file bytes);
//! after every step the trees, sizes and contents are compared and scrub
//! must be clean. Remounts (clean and by journal replay) happen mid-sequence.

mod core_support;

use std::collections::{BTreeMap, HashMap};

use core_support::{assert_clean, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{
    DedupeOutcome, Error, FallocMode, FileKind, Fs, Ino, RenameFlags, SetAttr, XattrSetMode,
    ROOT_INO,
};
use cowdax::media::SimMedia;
use proptest::prelude::*;

const BS: u64 = 4096;
const NAMES: [&[u8]; 5] = [b"a", b"b", b"c", b"dd", b"eee"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: usize,
    },
    Mkdir {
        dir: usize,
        name: usize,
    },
    Write {
        file: usize,
        off: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Fallocate {
        file: usize,
        off: u64,
        len: u64,
        mode: u8,
    },
    Clone {
        src: usize,
        dst: usize,
        src_blk: u64,
        dst_blk: u64,
        blocks: u64,
    },
    Dedupe {
        src: usize,
        dst: usize,
        src_blk: u64,
        dst_blk: u64,
        blocks: u64,
    },
    Copy {
        src: usize,
        dst: usize,
        src_off: u64,
        dst_off: u64,
        len: u64,
    },
    Unlink {
        entry: usize,
    },
    Rename {
        entry: usize,
        dir: usize,
        name: usize,
        exchange: bool,
    },
    Link {
        file: usize,
        dir: usize,
        name: usize,
    },
    Xattr {
        file: usize,
        name: usize,
        value: u8,
        remove: bool,
    },
    Remount {
        clean: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8usize, 0..5usize).prop_map(|(dir, name)| Op::Create { dir, name }),
        1 => (0..8usize, 0..5usize).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        6 => (0..8usize, 0..40_000u64, 0..12_000usize, any::<u64>())
            .prop_map(|(file, off, len, seed)| Op::Write { file, off, len, seed }),
        2 => (0..8usize, 0..40_000u64).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (0..8usize, 0..40_000u64, 1..20_000u64, 0..5u8)
            .prop_map(|(file, off, len, mode)| Op::Fallocate { file, off, len, mode }),
        3 => (0..8usize, 0..8usize, 0..8u64, 0..8u64, 0..6u64).prop_map(
            |(src, dst, src_blk, dst_blk, blocks)| Op::Clone { src, dst, src_blk, dst_blk, blocks }
        ),
        1 => (0..8usize, 0..8usize, 0..8u64, 0..8u64, 1..4u64).prop_map(
            |(src, dst, src_blk, dst_blk, blocks)| Op::Dedupe { src, dst, src_blk, dst_blk, blocks }
        ),
        2 => (0..8usize, 0..8usize, 0..30_000u64, 0..30_000u64, 0..20_000u64).prop_map(
            |(src, dst, src_off, dst_off, len)| Op::Copy { src, dst, src_off, dst_off, len }
        ),
        2 => (0..16usize).prop_map(|entry| Op::Unlink { entry }),
        2 => (0..16usize, 0..8usize, 0..5usize, any::<bool>())
            .prop_map(|(entry, dir, name, exchange)| Op::Rename { entry, dir, name, exchange }),
        1 => (0..8usize, 0..8usize, 0..5usize).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        1 => (0..8usize, 0..3usize, any::<u8>(), any::<bool>())
            .prop_map(|(file, name, value, remove)| Op::Xattr { file, name, value, remove }),
        1 => any::<bool>().prop_map(|clean| Op::Remount { clean }),
    ]
}

#[derive(Clone, Debug)]
enum Node {
    File {
        data: Vec<u8>,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    },
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
    },
}

/// The model, keyed by the inode numbers the core handed out.
struct Model {
    nodes: HashMap<Ino, Node>,
}

impl Model {
    fn entries(&self) -> Vec<(Ino, Vec<u8>, Ino)> {
        let mut out = Vec::new();
        let mut stack = vec![ROOT_INO];
        while let Some(d) = stack.pop() {
            if let Some(Node::Dir { entries }) = self.nodes.get(&d) {
                for (name, &child) in entries {
                    out.push((d, name.clone(), child));
                    if matches!(self.nodes.get(&child), Some(Node::Dir { .. })) {
                        stack.push(child);
                    }
                }
            }
        }
        out.sort();
        out
    }
    fn dirs(&self) -> Vec<Ino> {
        let mut v: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n, Node::Dir { .. }))
            .map(|(&i, _)| i)
            .collect();
        v.sort();
        v
    }
    fn files(&self) -> Vec<Ino> {
        let mut v: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .map(|(&i, _)| i)
            .collect();
        v.sort();
        v
    }
    fn data(&mut self, ino: Ino) -> &mut Vec<u8> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File { data, .. }) => data,
            _ => panic!("model: {ino} is not a file"),
        }
    }
    fn dir(&mut self, ino: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir { entries }) => entries,
            _ => panic!("model: {ino} is not a dir"),
        }
    }
    fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir { .. }))
    }
    /// Drop nodes no entry references.
    fn gc(&mut self) {
        let mut referenced: std::collections::HashSet<Ino> = [ROOT_INO].into();
        for (_, _, c) in self.entries() {
            referenced.insert(c);
        }
        self.nodes.retain(|i, _| referenced.contains(i));
    }
    fn within(&self, dir: Ino, ancestor: Ino) -> bool {
        if dir == ancestor {
            return true;
        }
        let mut stack = vec![ancestor];
        while let Some(d) = stack.pop() {
            if let Some(Node::Dir { entries }) = self.nodes.get(&d) {
                for &c in entries.values() {
                    if c == dir {
                        return true;
                    }
                    if self.is_dir(c) {
                        stack.push(c);
                    }
                }
            }
        }
        false
    }
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[i % v.len()])
    }
}

fn errno<T>(r: &Result<T, Error>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno(),
    }
}

fn compare(fs: &Fs, model: &Model) {
    let mut stack = vec![ROOT_INO];
    while let Some(d) = stack.pop() {
        let Some(Node::Dir { entries }) = model.nodes.get(&d) else {
            panic!("model dir {d} missing")
        };
        let mut got = BTreeMap::new();
        fs.readdir(d, 2, &mut |e| {
            got.insert(e.name.clone(), e.ino);
            true
        })
        .expect("readdir");
        assert_eq!(&got, entries, "entries of dir {d}");
        for &child in entries.values() {
            let attr = fs.getattr(child).expect("getattr");
            match model.nodes.get(&child) {
                Some(Node::Dir { .. }) => {
                    assert_eq!(attr.kind, FileKind::Directory);
                    stack.push(child);
                }
                Some(Node::File { data, xattrs }) => {
                    assert_eq!(attr.size, data.len() as u64, "size of {child}");
                    let got = fs.read(child, 0, 1 << 20).expect("read");
                    assert!(got == *data, "contents of {child} differ");
                    let names = fs.listxattr(child).expect("listxattr");
                    assert_eq!(names, xattrs.keys().cloned().collect::<Vec<_>>());
                    let links = model.entries().iter().filter(|e| e.2 == child).count();
                    assert_eq!(attr.nlink as usize, links, "nlink of {child}");
                }
                None => panic!("model node {child} missing"),
            }
        }
    }
}

fn run(ops: Vec<Op>) {
    let sim: SimMedia = formatted(4096, Some(64 * 1024));
    let mut fs = open(&sim);
    let mut model = Model {
        nodes: HashMap::from([(
            ROOT_INO,
            Node::Dir {
                entries: BTreeMap::new(),
            },
        )]),
    };
    for op in ops {
        step(&sim, &mut fs, &mut model, &op);
        model.gc();
        assert_clean(&fs);
        compare(&fs, &model);
    }
    fs.unmount().expect("unmount");
    drop(fs);
    let fs = open(&sim);
    assert_clean(&fs);
    compare(&fs, &model);
}

fn step(sim: &SimMedia, fs: &mut Fs, m: &mut Model, op: &Op) {
    let dirs = m.dirs();
    let files = m.files();
    let entries = m.entries();
    match *op {
        Op::Create { dir, name } | Op::Mkdir { dir, name } => {
            let d = pick(&dirs, dir).expect("root exists");
            let name = NAMES[name];
            let exists = m.dir(d).contains_key(name);
            let r = if matches!(op, Op::Create { .. }) {
                fs.mknod(d, name, libc::S_IFREG | 0o644, 0, ROOT_CREDS)
            } else {
                fs.mkdir(d, name, 0o755, ROOT_CREDS)
            };
            if exists {
                assert_eq!(errno(&r), libc::EEXIST);
            } else {
                let attr = r.expect("create");
                let node = if matches!(op, Op::Create { .. }) {
                    Node::File {
                        data: Vec::new(),
                        xattrs: BTreeMap::new(),
                    }
                } else {
                    Node::Dir {
                        entries: BTreeMap::new(),
                    }
                };
                m.nodes.insert(attr.ino, node);
                m.dir(d).insert(name.to_vec(), attr.ino);
            }
        }
        Op::Write {
            file,
            off,
            len,
            seed,
        } => {
            let Some(f) = pick(&files, file) else { return };
            let bytes = pattern(seed, len);
            assert_eq!(fs.write(f, off, &bytes).expect("write"), len as u32);
            if len > 0 {
                let data = m.data(f);
                let end = off as usize + len;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[off as usize..end].copy_from_slice(&bytes);
            }
        }
        Op::Truncate { file, size } => {
            let Some(f) = pick(&files, file) else { return };
            fs.setattr(
                f,
                &SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                },
            )
            .expect("truncate");
            m.data(f).resize(size as usize, 0);
        }
        Op::Fallocate {
            file,
            off,
            len,
            mode,
        } => {
            let Some(f) = pick(&files, file) else { return };
            let mode = match mode {
                0 => FallocMode::Allocate,
                1 => FallocMode::KeepSize,
                2 => FallocMode::PunchHole,
                3 => FallocMode::ZeroRange { keep_size: true },
                _ => FallocMode::ZeroRange { keep_size: false },
            };
            fs.fallocate(f, off, len, mode).expect("fallocate");
            let data = m.data(f);
            let end = (off + len) as usize;
            let grows = matches!(
                mode,
                FallocMode::Allocate | FallocMode::ZeroRange { keep_size: false }
            );
            if grows && data.len() < end {
                data.resize(end, 0);
            }
            if matches!(mode, FallocMode::PunchHole | FallocMode::ZeroRange { .. }) {
                let hi = end.min(data.len());
                let lo = (off as usize).min(hi);
                data[lo..hi].fill(0);
            }
        }
        Op::Clone {
            src,
            dst,
            src_blk,
            dst_blk,
            blocks,
        } => {
            let (Some(s), Some(d)) = (pick(&files, src), pick(&files, dst)) else {
                return;
            };
            let (src_off, dst_off, len) = (src_blk * BS, dst_blk * BS, blocks * BS);
            let r = fs.clone_range(s, src_off, d, dst_off, len);
            let src_data = m.data(s).clone();
            let src_size = src_data.len() as u64;
            let expect: Result<u64, i32> = if src_off > src_size {
                Err(libc::EINVAL)
            } else {
                let avail = src_size - src_off;
                let n = if len == 0 { avail } else { len.min(avail) };
                let dst_size = m.data(d).len() as u64;
                if n % BS != 0 && dst_off + n < dst_size {
                    Err(libc::EINVAL)
                } else {
                    Ok(n)
                }
            };
            match expect {
                Err(e) => assert_eq!(errno(&r), e, "clone error"),
                Ok(n) => {
                    assert_eq!(r.expect("clone"), n);
                    if n > 0 {
                        let data = m.data(d);
                        let end = (dst_off + n) as usize;
                        if data.len() < end {
                            data.resize(end, 0);
                        }
                        data[dst_off as usize..end]
                            .copy_from_slice(&src_data[src_off as usize..(src_off + n) as usize]);
                    }
                }
            }
        }
        Op::Dedupe {
            src,
            dst,
            src_blk,
            dst_blk,
            blocks,
        } => {
            let (Some(s), Some(d)) = (pick(&files, src), pick(&files, dst)) else {
                return;
            };
            let (src_off, dst_off, len) = (src_blk * BS, dst_blk * BS, blocks * BS);
            // Make the destination equal first half the time, so dedupe
            // actually shares: clone bytes over by a plain write.
            let src_data = m.data(s).clone();
            let r = fs.dedupe_range(s, src_off, d, dst_off, len);
            let dst_data = m.data(d).clone();
            if src_off + len > src_data.len() as u64 || dst_off + len > dst_data.len() as u64 {
                assert_eq!(errno(&r), libc::EINVAL);
            } else {
                let same = src_data[src_off as usize..(src_off + len) as usize]
                    == dst_data[dst_off as usize..(dst_off + len) as usize];
                let got = r.expect("dedupe");
                if same {
                    assert_eq!(got, DedupeOutcome::Deduped { bytes: len });
                } else {
                    assert_eq!(got, DedupeOutcome::Differs);
                }
            }
        }
        Op::Copy {
            src,
            dst,
            src_off,
            dst_off,
            len,
        } => {
            let (Some(s), Some(d)) = (pick(&files, src), pick(&files, dst)) else {
                return;
            };
            if s == d && src_off < dst_off + len && dst_off < src_off + len {
                return; // the VFS never sends same-file copies that overlap
            }
            let src_data = m.data(s).clone();
            let n = len.min((src_data.len() as u64).saturating_sub(src_off));
            let got = fs
                .copy_range(s, src_off, d, dst_off, len)
                .expect("copy_range");
            assert_eq!(got, n, "bytes copied");
            if n > 0 {
                let data = m.data(d);
                let end = (dst_off + n) as usize;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[dst_off as usize..end]
                    .copy_from_slice(&src_data[src_off as usize..(src_off + n) as usize]);
            }
        }
        Op::Unlink { entry } => {
            let Some((p, name, child)) = entries.get(entry % entries.len().max(1)).cloned() else {
                return;
            };
            if m.is_dir(child) {
                let r = fs.rmdir(p, &name);
                if m.dir(child).is_empty() {
                    r.expect("rmdir");
                    m.dir(p).remove(&name);
                } else {
                    assert_eq!(errno(&r), libc::ENOTEMPTY);
                }
            } else {
                fs.unlink(p, &name).expect("unlink");
                m.dir(p).remove(&name);
            }
        }
        Op::Rename {
            entry,
            dir,
            name,
            exchange,
        } => {
            let Some((p, old_name, src)) = entries.get(entry % entries.len().max(1)).cloned()
            else {
                return;
            };
            let np = pick(&dirs, dir).expect("root");
            let new_name = NAMES[name].to_vec();
            let dst = m.dir(np).get(&new_name).copied();
            let flags = RenameFlags {
                noreplace: false,
                exchange,
            };
            let r = fs.rename(p, &old_name, np, &new_name, flags);
            let expect: Result<(), i32> = (|| {
                if exchange && dst.is_none() {
                    return Err(libc::ENOENT);
                }
                if dst == Some(src) {
                    return Ok(());
                }
                if p != np {
                    if m.is_dir(src) && m.within(np, src) {
                        return Err(libc::EINVAL);
                    }
                    if exchange {
                        if let Some(d) = dst {
                            if m.is_dir(d) && m.within(p, d) {
                                return Err(libc::EINVAL);
                            }
                        }
                    }
                }
                if !exchange {
                    if let Some(d) = dst {
                        match (m.is_dir(src), m.is_dir(d)) {
                            (false, true) => return Err(libc::EISDIR),
                            (true, false) => return Err(libc::ENOTDIR),
                            (true, true) if !m.dir(d).is_empty() => return Err(libc::ENOTEMPTY),
                            _ => {}
                        }
                    }
                }
                Ok(())
            })();
            match expect {
                Err(e) => assert_eq!(errno(&r), e, "rename {op:?}"),
                Ok(()) => {
                    r.expect("rename");
                    if dst != Some(src) {
                        if exchange {
                            let d = dst.expect("exchange target");
                            m.dir(p).insert(old_name, d);
                            m.dir(np).insert(new_name, src);
                        } else {
                            m.dir(p).remove(&old_name);
                            m.dir(np).insert(new_name, src);
                        }
                    }
                }
            }
        }
        Op::Link { file, dir, name } => {
            let Some(f) = pick(&files, file) else { return };
            let d = pick(&dirs, dir).expect("root");
            let r = fs.link(f, d, NAMES[name]);
            if m.dir(d).contains_key(NAMES[name]) {
                assert_eq!(errno(&r), libc::EEXIST);
            } else {
                r.expect("link");
                m.dir(d).insert(NAMES[name].to_vec(), f);
            }
        }
        Op::Xattr {
            file,
            name,
            value,
            remove,
        } => {
            let Some(f) = pick(&files, file) else { return };
            let key = format!("user.k{name}").into_bytes();
            let Some(Node::File { xattrs, .. }) = m.nodes.get_mut(&f) else {
                return;
            };
            if remove {
                let r = fs.removexattr(f, &key);
                if xattrs.remove(&key).is_some() {
                    r.expect("removexattr");
                } else {
                    assert_eq!(errno(&r), libc::ENODATA);
                }
            } else {
                fs.setxattr(f, &key, &[value; 3], XattrSetMode::Any)
                    .expect("setxattr");
                assert_eq!(fs.getxattr(f, &key).expect("getxattr"), vec![value; 3]);
                xattrs.insert(key, vec![value; 3]);
            }
        }
        Op::Remount { clean } => {
            // Replay must rebuild exactly the attributes the live operations
            // produced (all inodes after a clean unmount; after a crash,
            // directories — files may lose lazily journaled timestamps).
            let inos: Vec<Ino> = if clean {
                m.nodes.keys().copied().collect()
            } else {
                dirs.clone()
            };
            let before: Vec<_> = inos
                .iter()
                .map(|&i| fs.getattr(i).expect("getattr"))
                .collect();
            if clean {
                fs.unmount().expect("unmount");
            }
            *fs = open(sim);
            let after: Vec<_> = inos
                .iter()
                .map(|&i| fs.getattr(i).expect("getattr"))
                .collect();
            assert_eq!(
                before, after,
                "attributes changed across remount (clean: {clean})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 4000, ..ProptestConfig::default() })]
    #[test]
    fn core_matches_model_for_random_operation_sequences(ops in prop::collection::vec(op_strategy(), 1..60)) {
        run(ops);
    }
}

#[test]
fn cloned_then_cow_then_punched_shared_ranges_match_model() {
    run(vec![
        Op::Create { dir: 0, name: 0 },
        Op::Write {
            file: 0,
            off: 0,
            len: 30_000,
            seed: 1,
        },
        Op::Create { dir: 0, name: 1 },
        Op::Clone {
            src: 0,
            dst: 1,
            src_blk: 0,
            dst_blk: 0,
            blocks: 0,
        },
        Op::Write {
            file: 1,
            off: 5000,
            len: 100,
            seed: 2,
        },
        Op::Fallocate {
            file: 0,
            off: 3000,
            len: 9000,
            mode: 2,
        },
        Op::Clone {
            src: 1,
            dst: 1,
            src_blk: 0,
            dst_blk: 2,
            blocks: 5,
        },
        Op::Truncate {
            file: 0,
            size: 7000,
        },
        Op::Remount { clean: false },
        Op::Write {
            file: 0,
            off: 9000,
            len: 10,
            seed: 3,
        },
        Op::Unlink { entry: 0 },
        Op::Remount { clean: true },
    ]);
}
