//! Read-only inspection of an image for `cowdax dump` and fsck: reports
//! everything it can find instead of failing at the first problem, and never
//! writes.

use std::fmt;

use super::journal::StopReason;
use super::superblock::{Superblock, SuperblockDefect};
use super::{checkpoint, read_superblocks, ring_of, slot_name, PhysExtent, Store};
use crate::media::Media;

/// One superblock copy.
#[derive(Clone, Debug)]
pub struct SuperblockReport {
    pub slot: usize,
    pub result: Result<Superblock, SuperblockDefect>,
}

/// The journal as followed from the current superblock's replay point.
#[derive(Clone, Debug)]
pub struct JournalReport {
    pub capacity_bytes: u64,
    pub replay_offset: u64,
    pub replay_seq: u64,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub payload_bytes: u64,
    pub used_bytes: u64,
    pub wrap_markers: u64,
    pub head_offset: u64,
    pub stop_offset: u64,
    pub stop: StopReason,
}

/// The checkpoint the current superblock points to.
#[derive(Clone, Debug)]
pub struct CheckpointReport {
    pub descriptor_block: u64,
    pub generation: u64,
    /// Descriptor verified (magic, checksum, bounds)? If not, why.
    pub descriptor: Result<checkpoint::Descriptor, String>,
    /// Payload checksum verified? If not, why (None: descriptor unusable).
    pub payload: Option<Result<u64, String>>,
}

/// Everything `inspect` found.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub media: String,
    pub media_bytes: u64,
    pub superblocks: Vec<SuperblockReport>,
    /// Slot of the valid superblock with the highest sequence.
    pub current: Option<usize>,
    /// When the current superblock's checkpoint is bad: the slot `open`
    /// falls back to (its checkpoint verifies and its journal covers the bad
    /// one), or `None` when `open` will refuse the image.
    pub fallback: Option<Option<usize>>,
    pub checkpoint: Option<CheckpointReport>,
    pub journal: Option<JournalReport>,
    /// Problems reading the media itself.
    pub errors: Vec<String>,
}

impl Inspection {
    /// True when both superblocks, the checkpoint and the journal's
    /// structure look healthy (the journal may end at any record).
    pub fn is_healthy(&self) -> bool {
        self.errors.is_empty()
            && self.superblocks.iter().all(|s| s.result.is_ok())
            && self
                .checkpoint
                .as_ref()
                .is_none_or(|c| c.descriptor.is_ok() && matches!(c.payload, Some(Ok(_))))
    }

    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

/// Inspect `media` without writing and without stopping at the first problem.
pub fn inspect(media: &dyn Media) -> Inspection {
    let mut inspection = Inspection {
        media: media.describe(),
        media_bytes: media.len(),
        superblocks: Vec::new(),
        current: None,
        fallback: None,
        checkpoint: None,
        journal: None,
        errors: Vec::new(),
    };
    let slots = match read_superblocks(media) {
        Ok(slots) => slots,
        Err(err) => {
            inspection
                .errors
                .push(format!("reading superblocks: {err}"));
            return inspection;
        }
    };
    for read in slots {
        inspection.superblocks.push(SuperblockReport {
            slot: read.slot,
            result: read.result,
        });
    }
    let current = inspection
        .superblocks
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|sb| (r.slot, sb.clone())))
        .max_by_key(|(_, sb)| sb.sb_seq);
    let Some((slot, sb)) = current else {
        return inspection;
    };
    inspection.current = Some(slot);
    let other = inspection
        .superblocks
        .iter()
        .find(|r| r.slot != slot)
        .and_then(|r| r.result.as_ref().ok().map(|copy| (r.slot, copy.clone())));
    if sb.checkpoint_block != 0 {
        let descriptor = checkpoint::read_descriptor(media, &sb);
        let payload = descriptor.as_ref().ok().map(|d| {
            checkpoint::read_payload(media, &sb.uuid, d).map(|payload| payload.len() as u64)
        });
        let bad = descriptor.is_err() || matches!(payload, Some(Err(_)));
        if bad {
            inspection.fallback = Some(
                Store::fallback(media, &sb, other.as_ref(), false)
                    .map(|(fallback_slot, _, _)| fallback_slot),
            );
        }
        inspection.checkpoint = Some(CheckpointReport {
            descriptor_block: sb.checkpoint_block,
            generation: sb.checkpoint_gen,
            descriptor,
            payload,
        });
    }
    let scan = ring_of(&sb).scan(
        media,
        sb.journal_replay_offset,
        sb.journal_replay_seq,
        sb.journal_replay_epoch,
    );
    inspection.journal = Some(JournalReport {
        capacity_bytes: sb.journal_capacity_bytes(),
        replay_offset: sb.journal_replay_offset,
        replay_seq: sb.journal_replay_seq,
        records: scan.records.len() as u64,
        first_seq: scan.records.first().map(|r| r.seq),
        last_seq: scan.records.last().map(|r| r.seq),
        payload_bytes: scan.records.iter().map(|r| r.payload.len() as u64).sum(),
        used_bytes: scan.used_bytes,
        wrap_markers: scan.wrap_markers,
        head_offset: scan.head_offset,
        stop_offset: scan.head_offset,
        stop: scan.stop,
    });
    inspection
}

fn write_extents(f: &mut fmt::Formatter<'_>, extents: &[PhysExtent]) -> fmt::Result {
    for (index, extent) in extents.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{}+{}", extent.start, extent.len)?;
    }
    Ok(())
}

/// The usual 8-4-4-4-12 hex form.
fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&uuid[..4]),
        hex(&uuid[4..6]),
        hex(&uuid[6..8]),
        hex(&uuid[8..10]),
        hex(&uuid[10..])
    )
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "media: {}", self.media)?;
        writeln!(f, "region: {} bytes", self.media_bytes)?;
        for error in &self.errors {
            writeln!(f, "error: {error}")?;
        }
        for report in &self.superblocks {
            let marker = if self.current == Some(report.slot) {
                " (current)"
            } else {
                ""
            };
            match &report.result {
                Err(defect) => writeln!(
                    f,
                    "superblock {}: INVALID: {defect}",
                    slot_name(report.slot)
                )?,
                Ok(sb) => {
                    writeln!(
                        f,
                        "superblock {}{marker}: valid, seq {}",
                        slot_name(report.slot),
                        sb.sb_seq
                    )?;
                    writeln!(
                        f,
                        "  version {}  features compat {:#x} incompat {:#x} ro_compat {:#x}",
                        sb.version, sb.compat, sb.incompat, sb.ro_compat
                    )?;
                    writeln!(
                        f,
                        "  uuid {}  label {:?}",
                        uuid_text(&sb.uuid),
                        sb.label_text()
                    )?;
                    writeln!(
                        f,
                        "  block size {}  total blocks {}  journal blocks {}..{}  pool from block {}",
                        sb.block_size,
                        sb.total_blocks,
                        sb.journal_start,
                        sb.journal_start + sb.journal_blocks,
                        sb.pool_start
                    )?;
                    if sb.checkpoint_block == 0 {
                        writeln!(f, "  checkpoint: none")?;
                    } else {
                        writeln!(
                            f,
                            "  checkpoint: generation {} descriptor block {} crc {:#010x}",
                            sb.checkpoint_gen, sb.checkpoint_block, sb.checkpoint_desc_crc
                        )?;
                    }
                    writeln!(
                        f,
                        "  journal replay from offset {} seq {} epoch ≥ {}  current epoch {}",
                        sb.journal_replay_offset,
                        sb.journal_replay_seq,
                        sb.journal_replay_epoch,
                        sb.journal_epoch
                    )?;
                    writeln!(
                        f,
                        "  {}  mounted {} times  created {}  last mounted {}",
                        if sb.clean {
                            "clean"
                        } else {
                            "not clean (in use or crashed)"
                        },
                        sb.mount_count,
                        sb.created_secs,
                        sb.last_mounted_secs
                    )?;
                }
            }
        }
        if self.current.is_none() {
            writeln!(f, "no valid superblock: nothing more to show")?;
            return Ok(());
        }
        match &self.checkpoint {
            None => writeln!(f, "checkpoint: none (freshly formatted)")?,
            Some(cp) => {
                write!(
                    f,
                    "checkpoint: generation {} at block {}: ",
                    cp.generation, cp.descriptor_block
                )?;
                match &cp.descriptor {
                    Err(why) => writeln!(f, "descriptor BAD: {why}")?,
                    Ok(d) => {
                        write!(
                            f,
                            "{} payload bytes, covers journal up to seq {}, extents ",
                            d.payload_bytes, d.covered_seq
                        )?;
                        write_extents(f, &d.extents)?;
                        match &cp.payload {
                            Some(Ok(_)) => writeln!(f, "; payload crc ok")?,
                            Some(Err(why)) => writeln!(f, "; payload BAD: {why}")?,
                            None => writeln!(f)?,
                        }
                    }
                }
            }
        }
        match self.fallback {
            Some(Some(slot)) => writeln!(
                f,
                "recovery: the current checkpoint is bad; open falls back to superblock {} \
                 (its checkpoint verifies and its journal covers the bad one)",
                slot_name(slot)
            )?,
            Some(None) => writeln!(
                f,
                "recovery: the current checkpoint is bad and no other superblock can stand in: \
                 open refuses this image"
            )?,
            None => {}
        }
        if let Some(j) = &self.journal {
            writeln!(
                f,
                "journal: {} bytes, replay from offset {} seq {}",
                j.capacity_bytes, j.replay_offset, j.replay_seq
            )?;
            match (j.first_seq, j.last_seq) {
                (Some(first), Some(last)) => writeln!(
                    f,
                    "  {} transactions, seq {first}..={last}, {} payload bytes, {} ring bytes in use, {} wrap markers",
                    j.records, j.payload_bytes, j.used_bytes, j.wrap_markers
                )?,
                _ => writeln!(f, "  no transactions to replay")?,
            }
            writeln!(f, "  replay stops at offset {}: {}", j.stop_offset, j.stop)?;
        }
        Ok(())
    }
}
