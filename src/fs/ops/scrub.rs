//! Queries over the sharing metadata (extents, owners, usage, paths) and
//! the invariant checker (`scrub`), which fsck also uses.

use std::collections::BTreeMap;

use crate::fs::inode::{InoMap, Inode};
use crate::fs::limits::MAX_EXTENT_BLOCKS;
use crate::fs::locks::{mlock, rlock, wlock};
use crate::fs::space::{RefRun, Space};
use crate::fs::{
    CheckReport, Error, ExtentInfo, FileKind, Fs, Ino, Owner, Result, Usage, ROOT_INO,
};
use crate::store::BLOCK_SIZE;

const BS: u64 = BLOCK_SIZE;

/// Merge touching runs with equal counts (two trees with the same per-block
/// counts compare equal after this).
fn normalize_refcounts(tree: &BTreeMap<u64, RefRun>) -> Vec<(u64, u64, u32)> {
    let mut out: Vec<(u64, u64, u32)> = Vec::new();
    for (&s, r) in tree {
        if let Some(last) = out.last_mut() {
            if last.0 + last.1 == s && last.2 == r.refcount {
                last.1 += r.len_blocks;
                continue;
            }
        }
        out.push((s, r.len_blocks, r.refcount));
    }
    out
}

#[allow(dead_code)]
fn merge_runs(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, l) in runs {
        if let Some(last) = out.last_mut() {
            if last.0 + last.1 == s {
                last.1 += l;
                continue;
            }
        }
        out.push((s, l));
    }
    out
}

impl Fs {
    /// Rebuild refcounts/owner map/free space from the extent maps and
    /// compare with the live ones; check every DESIGN.md §5 invariant.
    pub fn scrub(&self) -> Result<CheckReport> {
        self.check_live()?;
        let _g = wlock(&self.global);
        let all = self.table.all();
        let guards: Vec<_> = all.iter().map(|(i, a)| (*i, rlock(a))).collect();
        let inodes: InoMap<&Inode> = guards.iter().map(|(i, g)| (*i, &**g)).collect();
        let space = mlock(&self.space);
        let mut report = CheckReport {
            inodes: inodes.len() as u64,
            ..CheckReport::default()
        };
        // Read-only mounts (fsck) do not reclaim orphans: an unlinked inode
        // left by a crashed daemon is expected there, not an error.
        check_tree(&inodes, self.read_only, &mut report);
        check_space(&inodes, &space, &mut report);
        Ok(report)
    }

    /// The file's extents and holes up to EOF, as the extent report shows
    /// them: mapped extents are split where sharing begins or ends.
    pub fn extents(&self, ino: Ino) -> Result<Vec<ExtentInfo>> {
        self.check_live()?;
        let arc = self.inode(ino)?;
        let inode = rlock(&arc);
        if inode.deleted {
            return Err(Error::NotFound);
        }
        let space = mlock(&self.space);
        let mut out = Vec::new();
        let mut pos = 0u64;
        for (&fb, e) in &inode.extents {
            if fb > pos {
                out.push(ExtentInfo {
                    file_offset: pos * BS,
                    phys_offset: None,
                    len: (fb - pos) * BS,
                    shared: false,
                    unwritten: false,
                });
            }
            // One reported extent per run of equal sharing: SHARED covers
            // only the blocks some other reference maps (as XFS reports).
            let mut run_fb = fb;
            let mut run: Option<(u64, u64, bool)> = None; // (phys, blocks, shared)
            for (phys, len, refcount) in space.refcounts_in(e.phys_block, e.len_blocks as u64) {
                let shared = refcount > 1;
                match run.as_mut() {
                    Some(r) if r.2 == shared => r.1 += len,
                    _ => {
                        if let Some((p, n, sh)) = run.take() {
                            out.push(extent_info(run_fb, p, n, sh, e.unwritten()));
                            run_fb += n;
                        }
                        run = Some((phys, len, shared));
                    }
                }
            }
            if let Some((p, n, sh)) = run {
                out.push(extent_info(run_fb, p, n, sh, e.unwritten()));
            }
            pos = fb + e.len_blocks as u64;
        }
        let size_blocks = inode.attrs.size.div_ceil(BS);
        if inode.attrs.kind == FileKind::Regular && size_blocks > pos {
            out.push(ExtentInfo {
                file_offset: pos * BS,
                phys_offset: None,
                len: (size_blocks - pos) * BS,
                shared: false,
                unwritten: false,
            });
        }
        Ok(out)
    }

    /// Owners of physical blocks `phys_block..phys_block+len_blocks`.
    pub fn owners(&self, phys_block: u64, len_blocks: u64) -> Result<Vec<Owner>> {
        self.check_live()?;
        let end = phys_block.saturating_add(len_blocks);
        let space = mlock(&self.space);
        let mut out: Vec<Owner> = space
            .owners_in(phys_block, len_blocks)
            .into_iter()
            .map(|(k, l)| {
                let lo = k.phys_block.max(phys_block);
                let hi = (k.phys_block + l as u64).min(end);
                Owner {
                    phys_block: lo,
                    len_blocks: hi - lo,
                    ino: k.ino,
                    file_block: k.file_block + (lo - k.phys_block),
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn usage(&self) -> Result<Usage> {
        self.check_live()?;
        let mut logical_blocks = 0;
        for (_, arc) in self.table.all() {
            logical_blocks += rlock(&arc).alloc_blocks;
        }
        let space = mlock(&self.space);
        let physical_blocks = space.referenced_blocks();
        let metadata_blocks: u64 = space.checkpoint_extents().iter().map(|e| e.len).sum();
        Ok(Usage {
            logical_bytes: logical_blocks * BS,
            physical_bytes: physical_blocks * BS,
            saved_bytes: logical_blocks.saturating_sub(physical_blocks) * BS,
            metadata_bytes: metadata_blocks * BS,
            total_bytes: space.pool_blocks() * BS,
            free_bytes: (space.available_blocks() + space.pending_blocks()) * BS,
        })
    }

    /// Paths of an inode (for fsmap output), at most `max` of them.
    pub fn paths_of(&self, ino: Ino, max: usize) -> Result<Vec<Vec<u8>>> {
        self.check_live()?;
        if ino == ROOT_INO {
            return Ok(vec![b"/".to_vec()]);
        }
        self.inode(ino)?;
        // Entries naming `ino` (a scan: this is a tool query, not a hot path).
        let mut links: Vec<(Ino, Vec<u8>)> = Vec::new();
        for (dir_ino, arc) in self.table.all() {
            let inode = rlock(&arc);
            if let Some(dir) = inode.dir.as_deref() {
                for (name, slot) in &dir.by_name {
                    if slot.ino == ino {
                        links.push((dir_ino, name.to_vec()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (dir, name) in links.into_iter().take(max) {
            let mut parts = vec![name];
            let mut cur = dir;
            let limit = self.table.len() + 1;
            for _ in 0..limit {
                if cur == ROOT_INO {
                    break;
                }
                let cur_arc = self.inode(cur)?;
                let parent = rlock(&cur_arc).attrs.parent;
                let parc = self.inode(parent)?;
                let p = rlock(&parc);
                let name = p
                    .dir
                    .as_deref()
                    .and_then(|d| d.by_name.iter().find(|(_, s)| s.ino == cur))
                    .map(|(n, _)| n.to_vec())
                    .ok_or_else(|| Error::Corrupt(format!("directory {cur} not in its parent")))?;
                parts.push(name);
                cur = parent;
            }
            let mut path = Vec::new();
            for part in parts.iter().rev() {
                path.push(b'/');
                path.extend_from_slice(part);
            }
            out.push(path);
        }
        Ok(out)
    }
}

/// Directory tree, link counts, sizes, extent-map shape.
fn check_tree(inodes: &InoMap<&Inode>, orphans_ok: bool, report: &mut CheckReport) {
    let errors = &mut report.errors;
    let mut links: InoMap<u32> = InoMap::default();
    let mut subdirs: InoMap<u32> = InoMap::default();
    let mut dir_parent: InoMap<Ino> = InoMap::default();
    for (&ino, inode) in inodes {
        let a = &inode.attrs;
        if let Some(dir) = inode.dir.as_deref() {
            if dir.by_name.len() != dir.by_cookie.len() {
                errors.push(format!("dir {ino}: name and cookie indexes differ"));
            }
            if a.size != dir.len() as u64 * 32 {
                errors.push(format!(
                    "dir {ino}: size {} for {} entries",
                    a.size,
                    dir.len()
                ));
            }
            if dir.max_cookie() >= a.next_cookie {
                errors.push(format!("dir {ino}: cookie beyond next_cookie"));
            }
            for (name, slot) in &dir.by_name {
                if dir.by_cookie.get(&slot.cookie) != Some(name) {
                    errors.push(format!("dir {ino}: cookie index mismatch"));
                }
                match inodes.get(&slot.ino) {
                    None => errors.push(format!(
                        "dir {ino}: entry {:?} points to missing inode {}",
                        String::from_utf8_lossy(name),
                        slot.ino
                    )),
                    Some(child) => {
                        if child.attrs.kind != slot.kind {
                            errors.push(format!(
                                "dir {ino}: entry kind differs from inode {}",
                                slot.ino
                            ));
                        }
                        *links.entry(slot.ino).or_default() += 1;
                        if slot.kind == FileKind::Directory {
                            *subdirs.entry(ino).or_default() += 1;
                            if dir_parent.insert(slot.ino, ino).is_some() {
                                errors.push(format!("dir {} has two parents", slot.ino));
                            }
                        }
                    }
                }
            }
        }
        // Extent map shape.
        let mut prev_end = 0u64;
        let mut sum = 0u64;
        for (&fb, e) in &inode.extents {
            if fb < prev_end {
                errors.push(format!("inode {ino}: overlapping extents at block {fb}"));
            }
            if e.len_blocks == 0 || e.len_blocks as u64 > MAX_EXTENT_BLOCKS {
                errors.push(format!("inode {ino}: extent length {}", e.len_blocks));
            }
            prev_end = fb + e.len_blocks as u64;
            sum += e.len_blocks as u64;
        }
        report.extents += inode.extents.len() as u64;
        if sum != inode.alloc_blocks {
            errors.push(format!(
                "inode {ino}: alloc_blocks {} != {sum}",
                inode.alloc_blocks
            ));
        }
        if !inode.extents.is_empty() && a.kind != FileKind::Regular {
            errors.push(format!("inode {ino}: extents on a non-regular file"));
        }
    }
    for (&ino, inode) in inodes {
        let a = &inode.attrs;
        let entries = links.get(&ino).copied().unwrap_or(0);
        if a.kind == FileKind::Directory {
            let expected = if ino == ROOT_INO || entries > 0 {
                2 + subdirs.get(&ino).copied().unwrap_or(0)
            } else {
                0
            };
            if a.nlink != expected {
                errors.push(format!("dir {ino}: nlink {} expected {expected}", a.nlink));
            }
            let parent = if ino == ROOT_INO {
                Some(ROOT_INO)
            } else {
                dir_parent.get(&ino).copied()
            };
            if let Some(p) = parent {
                if a.parent != p {
                    errors.push(format!("dir {ino}: parent {} but listed in {p}", a.parent));
                }
            }
        } else if a.nlink != entries {
            errors.push(format!(
                "inode {ino}: nlink {} but {entries} entries",
                a.nlink
            ));
        }
        let orphan_ok = inode.open_count > 0 || (orphans_ok && a.nlink == 0);
        if ino != ROOT_INO && entries == 0 && !orphan_ok {
            errors.push(format!("inode {ino}: unreachable and not open"));
        }
    }
    if links.contains_key(&ROOT_INO) {
        errors.push("root directory is linked from a directory".into());
    }
}

/// Refcounts, owner map and free space against a rebuild from the maps.
fn check_space(inodes: &InoMap<&Inode>, live: &Space, report: &mut CheckReport) {
    let mut rebuilt = Space::new(live.pool_start(), live.total_blocks());
    for (&ino, inode) in inodes {
        for (&fb, e) in &inode.extents {
            if let Err(err) = rebuilt.incref(e.phys_block, e.len_blocks as u64) {
                report.errors.push(format!("inode {ino}: {err}"));
            }
            rebuilt.owner_insert(e.phys_block, ino, fb, e.len_blocks);
        }
    }
    let errors = &mut report.errors;
    if let Err(err) = live.check() {
        errors.push(format!("space structure: {err}"));
    }
    for a in live.anomalies() {
        errors.push(format!("live space anomaly: {a}"));
    }
    let live_refs = normalize_refcounts(live.refcounts());
    let rebuilt_refs = normalize_refcounts(rebuilt.refcounts());
    if live_refs != rebuilt_refs {
        errors.push(format!(
            "refcount tree differs from extent maps ({} vs {} runs)",
            live_refs.len(),
            rebuilt_refs.len()
        ));
    }
    if live.owners() != rebuilt.owners() {
        errors.push(format!(
            "owner map differs from extent maps ({} vs {} entries)",
            live.owners().len(),
            rebuilt.owners().len()
        ));
    }
    // Refcount == owners covering each block (per owner-run boundaries).
    for &(s, l, count) in &rebuilt_refs {
        let owners = rebuilt.owners_in(s, 1).len() as u32;
        if owners != count {
            errors.push(format!("block {s}: refcount {count} but {owners} owners"));
        }
        let _ = l;
    }
    report.shared_blocks = rebuilt_refs.iter().filter(|r| r.2 > 1).map(|r| r.1).sum();
    // Free ∪ pending ∪ checkpoint ∪ referenced == pool, disjoint.
    let mut parts: Vec<(u64, u64, &str)> = Vec::new();
    parts.extend(live.free().runs().map(|(s, l)| (s, l, "free")));
    parts.extend(
        live.pending_free()
            .map(|(_, e)| (e.start, e.len, "pending")),
    );
    parts.extend(
        live.checkpoint_extents()
            .iter()
            .map(|e| (e.start, e.len, "checkpoint")),
    );
    parts.extend(rebuilt_refs.iter().map(|r| (r.0, r.1, "referenced")));
    parts.sort_unstable();
    let mut pos = live.pool_start();
    for (s, l, what) in &parts {
        if *s < pos {
            errors.push(format!("block {s} is both {what} and something else"));
        } else if *s > pos {
            errors.push(format!(
                "blocks {pos}+{} are neither free nor used (leak)",
                s - pos
            ));
        }
        pos = pos.max(s + l);
    }
    if pos != live.total_blocks() {
        errors.push(format!(
            "pool accounting ends at {pos}, not {}",
            live.total_blocks()
        ));
    }
    let free_total: u64 = live.free().runs().map(|r| r.1).sum();
    if free_total != live.free().free_blocks() {
        errors.push("free block count differs from free runs".into());
    }
    let _ = merge_runs;
}

fn extent_info(
    file_block: u64,
    phys_block: u64,
    len_blocks: u64,
    shared: bool,
    unwritten: bool,
) -> ExtentInfo {
    ExtentInfo {
        file_offset: file_block * BS,
        phys_offset: Some(phys_block * BS),
        len: len_blocks * BS,
        shared,
        unwritten,
    }
}
