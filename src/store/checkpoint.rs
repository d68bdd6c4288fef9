//! Checkpoints: a descriptor block plus payload blocks in pool extents
//! (docs/FORMAT.md §4).
//!
//! Invariants:
//! * the descriptor is the first block of the first extent; the payload
//!   fills the following blocks of the extents, in list order;
//! * the descriptor lists every extent of the checkpoint (itself included),
//!   all inside the pool and pairwise disjoint;
//! * the descriptor's checksum is seeded with the filesystem UUID and is
//!   repeated in the superblock that publishes it, together with the
//!   checkpoint generation.

use super::layout::{PhysExtent, BLOCK_SIZE};
use super::le::{le_u32, le_u64, put_u32, put_u64};
use super::superblock::Superblock;
use crate::media::Media;

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"COWDAXCP";
pub const DESCRIPTOR_BYTES: usize = BLOCK_SIZE as usize;
/// Most extents one checkpoint may be spread over (what fits in the descriptor).
pub const MAX_CHECKPOINT_EXTENTS: usize = 251;

const OFF_MAGIC: usize = 0;
const OFF_EXTENT_COUNT: usize = 8;
const OFF_RESERVED0: usize = 12;
const OFF_GEN: usize = 16;
const OFF_PAYLOAD_BYTES: usize = 24;
const OFF_PAYLOAD_CRC: usize = 32;
const OFF_RESERVED1: usize = 36;
const OFF_COVERED_SEQ: usize = 40;
const OFF_RESERVED2: usize = 48;
const OFF_EXTENTS: usize = 64;
const EXTENT_BYTES: usize = 16;
const OFF_RESERVED3: usize = OFF_EXTENTS + MAX_CHECKPOINT_EXTENTS * EXTENT_BYTES;
const OFF_CRC: usize = DESCRIPTOR_BYTES - 4;
const _: () = assert!(DESCRIPTOR_BYTES == 4096);
const _: () = assert!(EXTENT_BYTES == 16);
const _: () = assert!(OFF_RESERVED3 == 4080);
const _: () = assert!(OFF_RESERVED3 <= OFF_CRC);
const _: () = assert!(OFF_RESERVED1 + 4 == OFF_COVERED_SEQ);
const _: () = assert!(OFF_COVERED_SEQ + 8 == OFF_RESERVED2);
const _: () = assert!(DESCRIPTOR_BYTES as u64 == BLOCK_SIZE);

/// A verified checkpoint descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub generation: u64,
    pub payload_bytes: u64,
    pub payload_crc: u32,
    /// Last journal sequence number the checkpoint includes.
    pub covered_seq: u64,
    pub extents: Vec<PhysExtent>,
    pub crc: u32,
}

/// Payload blocks needed for `payload_len` bytes, descriptor included.
pub fn blocks_needed(payload_len: u64) -> u64 {
    1 + payload_len.div_ceil(BLOCK_SIZE)
}

fn descriptor_crc(uuid: &[u8; 16], bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(uuid), &bytes[..OFF_CRC])
}

fn payload_crc(uuid: &[u8; 16], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(uuid), payload)
}

/// Check that `extents` lie inside the pool of `sb` and do not overlap each
/// other. Returns the total number of blocks.
pub fn check_extents(sb: &Superblock, extents: &[PhysExtent]) -> Result<u64, String> {
    let mut sorted = extents.to_vec();
    sorted.sort();
    let mut total = 0u64;
    let mut previous_end = sb.pool_start;
    for extent in &sorted {
        if extent.len == 0 {
            return Err(format!("empty extent at block {}", extent.start));
        }
        let end = extent
            .start
            .checked_add(extent.len)
            .ok_or_else(|| format!("extent {}+{} overflows", extent.start, extent.len))?;
        if extent.start < sb.pool_start || end > sb.total_blocks {
            return Err(format!(
                "extent {}+{} is outside the pool (blocks {}..{})",
                extent.start, extent.len, sb.pool_start, sb.total_blocks
            ));
        }
        if extent.start < previous_end {
            return Err(format!(
                "extent {}+{} overlaps another",
                extent.start, extent.len
            ));
        }
        previous_end = end;
        total += extent.len;
    }
    Ok(total)
}

/// The payload's byte ranges on media, in order: (byte offset, length).
fn payload_runs(extents: &[PhysExtent], payload_bytes: u64) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut remaining = payload_bytes;
    for (index, extent) in extents.iter().enumerate() {
        if remaining == 0 {
            break;
        }
        // The first block of the first extent is the descriptor.
        let (first_block, blocks) = if index == 0 {
            (extent.start + 1, extent.len - 1)
        } else {
            (extent.start, extent.len)
        };
        let run = remaining.min(blocks * BLOCK_SIZE);
        if run > 0 {
            runs.push((first_block * BLOCK_SIZE, run));
            remaining -= run;
        }
    }
    runs
}

/// Verify the payload's checksum where it lies, without copying it; its
/// byte runs on media, in order, for the caller to read in place.
pub fn verify_payload_in_place(
    media: &dyn Media,
    uuid: &[u8; 16],
    descriptor: &Descriptor,
) -> Result<Vec<(u64, u64)>, String> {
    // Bounded by read_descriptor: payload_bytes fits inside pool extents.
    let runs = payload_runs(&descriptor.extents, descriptor.payload_bytes);
    let mut computed = crc32c::crc32c(uuid);
    for &(off, len) in &runs {
        // contract: the current checkpoint's blocks are never written while
        // it is current (a new checkpoint goes to freshly allocated blocks
        // and the old ones are freed only after the superblock moves on);
        // this runs on the load path of `Store::open`, before the store
        // exists to write anything; the closure only folds the bytes into a
        // checksum.
        media
            .with_slice(off, len, &mut |bytes| {
                computed = crc32c::crc32c_append(computed, bytes);
            })
            .map_err(|e| format!("reading checkpoint payload: {e}"))?;
    }
    if computed != descriptor.payload_crc {
        return Err(format!(
            "checkpoint payload checksum mismatch (stored {:#010x}, computed {computed:#010x})",
            descriptor.payload_crc
        ));
    }
    Ok(runs)
}

/// Write descriptor and payload (not yet published), persist them, fence.
/// `extents` must have passed [`check_extents`] with enough blocks.
pub fn write(
    media: &dyn Media,
    uuid: &[u8; 16],
    generation: u64,
    covered_seq: u64,
    payload: &[u8],
    extents: &[PhysExtent],
) -> crate::media::Result<Descriptor> {
    let mut written = 0usize;
    for (off, len) in payload_runs(extents, payload.len() as u64) {
        let chunk = &payload[written..written + len as usize];
        media.write(off, chunk)?;
        // Zero the tail of the last block so the image is deterministic.
        let tail = (BLOCK_SIZE - len % BLOCK_SIZE) % BLOCK_SIZE;
        if tail > 0 {
            media.write_zeroes(off + len, tail)?;
        }
        media.persist(off, len + tail)?;
        written += len as usize;
    }
    let descriptor = Descriptor {
        generation,
        payload_bytes: payload.len() as u64,
        payload_crc: payload_crc(uuid, payload),
        covered_seq,
        extents: extents.to_vec(),
        crc: 0,
    };
    let bytes = encode_descriptor(uuid, &descriptor);
    let crc = le_u32(&bytes, OFF_CRC);
    let desc_off = extents[0].start * BLOCK_SIZE;
    media.write(desc_off, &bytes)?;
    media.persist(desc_off, BLOCK_SIZE)?;
    media.fence()?;
    Ok(Descriptor { crc, ..descriptor })
}

pub fn encode_descriptor(uuid: &[u8; 16], descriptor: &Descriptor) -> Vec<u8> {
    let mut bytes = vec![0u8; DESCRIPTOR_BYTES];
    bytes[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&CHECKPOINT_MAGIC);
    put_u32(
        &mut bytes,
        OFF_EXTENT_COUNT,
        descriptor.extents.len() as u32,
    );
    put_u64(&mut bytes, OFF_GEN, descriptor.generation);
    put_u64(&mut bytes, OFF_PAYLOAD_BYTES, descriptor.payload_bytes);
    put_u32(&mut bytes, OFF_PAYLOAD_CRC, descriptor.payload_crc);
    put_u64(&mut bytes, OFF_COVERED_SEQ, descriptor.covered_seq);
    for (index, extent) in descriptor.extents.iter().enumerate() {
        let off = OFF_EXTENTS + index * EXTENT_BYTES;
        put_u64(&mut bytes, off, extent.start);
        put_u64(&mut bytes, off + 8, extent.len);
    }
    let crc = descriptor_crc(uuid, &bytes);
    put_u32(&mut bytes, OFF_CRC, crc);
    bytes
}

/// Read and verify the descriptor the superblock points to (not the payload).
pub fn read_descriptor(media: &dyn Media, sb: &Superblock) -> Result<Descriptor, String> {
    let block = sb.checkpoint_block;
    let mut bytes = vec![0u8; DESCRIPTOR_BYTES];
    media
        .read(block * BLOCK_SIZE, &mut bytes)
        .map_err(|e| format!("reading descriptor block {block}: {e}"))?;
    if bytes[OFF_MAGIC..OFF_MAGIC + 8] != CHECKPOINT_MAGIC {
        return Err(format!("no checkpoint magic in block {block}"));
    }
    let stored = le_u32(&bytes, OFF_CRC);
    let computed = descriptor_crc(&sb.uuid, &bytes);
    if stored != computed {
        return Err(format!(
            "descriptor in block {block}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    if stored != sb.checkpoint_desc_crc {
        return Err(format!(
            "descriptor in block {block} has checksum {stored:#010x} but the superblock expects {:#010x}",
            sb.checkpoint_desc_crc
        ));
    }
    let generation = le_u64(&bytes, OFF_GEN);
    if generation != sb.checkpoint_gen {
        return Err(format!(
            "descriptor in block {block} is generation {generation}, superblock expects {}",
            sb.checkpoint_gen
        ));
    }
    let reserved_zero = le_u32(&bytes, OFF_RESERVED0) == 0
        && le_u32(&bytes, OFF_RESERVED1) == 0
        && bytes[OFF_RESERVED2..OFF_EXTENTS].iter().all(|&b| b == 0);
    if !reserved_zero {
        return Err(format!(
            "descriptor in block {block}: reserved bytes not zero"
        ));
    }
    let count = le_u32(&bytes, OFF_EXTENT_COUNT) as usize;
    if count == 0 || count > MAX_CHECKPOINT_EXTENTS {
        return Err(format!("descriptor in block {block}: {count} extents"));
    }
    let extents: Vec<PhysExtent> = (0..count)
        .map(|index| {
            let off = OFF_EXTENTS + index * EXTENT_BYTES;
            PhysExtent {
                start: le_u64(&bytes, off),
                len: le_u64(&bytes, off + 8),
            }
        })
        .collect();
    let total_blocks =
        check_extents(sb, &extents).map_err(|e| format!("descriptor in block {block}: {e}"))?;
    if extents[0].start != block {
        return Err(format!(
            "descriptor in block {block} does not start its first extent ({})",
            extents[0].start
        ));
    }
    let payload_bytes = le_u64(&bytes, OFF_PAYLOAD_BYTES);
    // total_blocks ≤ pool size, so the product cannot overflow.
    if payload_bytes > (total_blocks - 1) * BLOCK_SIZE {
        return Err(format!(
            "descriptor in block {block}: payload of {payload_bytes} bytes exceeds its {total_blocks} blocks"
        ));
    }
    Ok(Descriptor {
        generation,
        payload_bytes,
        payload_crc: le_u32(&bytes, OFF_PAYLOAD_CRC),
        covered_seq: le_u64(&bytes, OFF_COVERED_SEQ),
        extents,
        crc: stored,
    })
}

/// Read the payload of a verified descriptor and check its checksum.
pub fn read_payload(
    media: &dyn Media,
    uuid: &[u8; 16],
    descriptor: &Descriptor,
) -> Result<Vec<u8>, String> {
    // Bounded by read_descriptor: payload_bytes fits inside pool extents.
    let mut payload = vec![0u8; descriptor.payload_bytes as usize];
    let mut filled = 0usize;
    for (off, len) in payload_runs(&descriptor.extents, descriptor.payload_bytes) {
        media
            .read(off, &mut payload[filled..filled + len as usize])
            .map_err(|e| format!("reading checkpoint payload: {e}"))?;
        filled += len as usize;
    }
    let computed = payload_crc(uuid, &payload);
    if computed != descriptor.payload_crc {
        return Err(format!(
            "checkpoint payload checksum mismatch (stored {:#010x}, computed {computed:#010x})",
            descriptor.payload_crc
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_skips_the_descriptor_block_and_follows_extent_order() {
        let extents = [
            PhysExtent { start: 10, len: 2 },
            PhysExtent { start: 20, len: 3 },
        ];
        let runs = payload_runs(&extents, BLOCK_SIZE + 5);
        assert_eq!(
            runs,
            vec![(11 * BLOCK_SIZE, BLOCK_SIZE), (20 * BLOCK_SIZE, 5)]
        );
        assert_eq!(blocks_needed(0), 1);
        assert_eq!(blocks_needed(BLOCK_SIZE + 1), 3);
    }
}
