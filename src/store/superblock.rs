//! The superblock: geometry, feature flags and the pointers recovery starts
//! from (docs/FORMAT.md §2).
//!
//! Invariants:
//! * the encoded form is exactly [`SUPERBLOCK_BYTES`] bytes, little-endian,
//!   with a crc32c over everything before the last 4 bytes;
//! * a superblock read from media is first a [`DecodedSuperblock`] (fields
//!   parsed, checksum checked, nothing else trusted) and becomes a
//!   [`Superblock`] only through [`DecodedSuperblock::validate`], which checks
//!   version, features and geometry before any arithmetic uses them.

use super::layout::{
    Geometry, BLOCK_SIZE, MAX_JOURNAL_BLOCKS, MIN_JOURNAL_BLOCKS, MIN_POOL_BLOCKS,
};
use super::le::{le_u32, le_u64, put_u32, put_u64};

/// Magic at byte 0 of both superblocks.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"COWDAXSB";
/// Format version written by this code; newer versions are refused.
pub const FORMAT_VERSION: u32 = 1;
/// Encoded size of a superblock (the rest of its block is zero).
pub const SUPERBLOCK_BYTES: usize = 512;
/// Bytes reserved for the label (NUL padded, at most 63 used).
pub const LABEL_BYTES: usize = 64;
/// Block numbers of the two superblock copies.
pub const SUPERBLOCK_BLOCKS: [u64; 2] = [0, 1];
/// The journal always starts right after the superblocks.
pub const JOURNAL_START_BLOCK: u64 = 2;

/// Upper bound for every counter in the superblock (sequences, epochs,
/// generation, mount count). Validation refuses larger values, so the `+ 1`
/// applied to them later can never overflow (2^62 increments are out of
/// reach).
pub const COUNTER_MAX: u64 = 1 << 62;

/// Feature flags this version understands. Unknown `incompat` bits make the
/// image unreadable, unknown `ro_compat` bits make it read-only, unknown
/// `compat` bits are ignored.
pub const COMPAT_SUPPORTED: u64 = 0;
pub const INCOMPAT_SUPPORTED: u64 = 0;
pub const RO_COMPAT_SUPPORTED: u64 = 0;

// Field offsets of the encoded superblock.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_SB_BYTES: usize = 12;
const OFF_COMPAT: usize = 16;
const OFF_INCOMPAT: usize = 24;
const OFF_RO_COMPAT: usize = 32;
const OFF_UUID: usize = 40;
const OFF_LABEL: usize = 56;
const OFF_BLOCK_SIZE: usize = 120;
const OFF_CLEAN: usize = 124;
const OFF_TOTAL_BLOCKS: usize = 128;
const OFF_JOURNAL_START: usize = 136;
const OFF_JOURNAL_BLOCKS: usize = 144;
const OFF_POOL_START: usize = 152;
const OFF_CHECKPOINT_BLOCK: usize = 160;
const OFF_CHECKPOINT_GEN: usize = 168;
const OFF_CHECKPOINT_DESC_CRC: usize = 176;
const OFF_RESERVED0: usize = 180;
const OFF_REPLAY_OFFSET: usize = 184;
const OFF_REPLAY_SEQ: usize = 192;
const OFF_JOURNAL_EPOCH: usize = 200;
const OFF_SB_SEQ: usize = 208;
const OFF_MOUNT_COUNT: usize = 216;
const OFF_CREATED: usize = 224;
const OFF_LAST_MOUNTED: usize = 232;
const OFF_REPLAY_EPOCH: usize = 240;
const OFF_RESERVED: usize = 248;
const OFF_CRC: usize = 508;

const _: () = assert!(SUPERBLOCK_BYTES == 512);
const _: () = assert!(OFF_LABEL + LABEL_BYTES == OFF_BLOCK_SIZE);
const _: () = assert!(OFF_RESERVED0 + 4 == OFF_REPLAY_OFFSET);
const _: () = assert!(OFF_LAST_MOUNTED + 8 == OFF_REPLAY_EPOCH);
const _: () = assert!(OFF_REPLAY_EPOCH + 8 == OFF_RESERVED);
const _: () = assert!(OFF_CRC + 4 == SUPERBLOCK_BYTES);
const _: () = assert!(SUPERBLOCK_BYTES as u64 <= BLOCK_SIZE);
const _: () = assert!(SUPERBLOCK_BYTES % 64 == 0);

/// A validated superblock (in-memory form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub version: u32,
    pub compat: u64,
    pub incompat: u64,
    pub ro_compat: u64,
    pub uuid: [u8; 16],
    pub label: [u8; LABEL_BYTES],
    pub block_size: u32,
    pub clean: bool,
    pub total_blocks: u64,
    pub journal_start: u64,
    pub journal_blocks: u64,
    pub pool_start: u64,
    /// Block of the current checkpoint's descriptor; 0 = no checkpoint yet.
    pub checkpoint_block: u64,
    /// Generation of the current checkpoint (0 = none); the descriptor repeats it.
    pub checkpoint_gen: u64,
    /// crc32c of the checkpoint descriptor (the value stored in it).
    pub checkpoint_desc_crc: u32,
    /// Byte offset inside the journal ring where replay starts.
    pub journal_replay_offset: u64,
    /// Sequence number of the first record to replay.
    pub journal_replay_seq: u64,
    /// Journal epoch: bumped at every read-write open; records carry it and
    /// replay requires it never to decrease along the log.
    pub journal_epoch: u64,
    /// Lowest epoch a replayed record may carry: the epoch of the run that
    /// set the replay point. Leftovers of older runs lying at or after the
    /// replay point are excluded by it.
    pub journal_replay_epoch: u64,
    /// Sequence of this superblock copy; the higher valid one is current.
    pub sb_seq: u64,
    pub mount_count: u64,
    pub created_secs: u64,
    pub last_mounted_secs: u64,
}

/// Why a superblock copy is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuperblockDefect {
    /// No cowdax magic: zeroes or a foreign format.
    NoMagic,
    /// Magic present but the checksum does not match (torn or corrupted).
    BadChecksum { stored: u32, computed: u32 },
    /// A cowdax superblock this version cannot read.
    Unsupported(String),
    /// Checksum fine but the contents are inconsistent.
    Invalid(String),
}

impl std::fmt::Display for SuperblockDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuperblockDefect::NoMagic => f.write_str("no cowdax superblock magic"),
            SuperblockDefect::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            SuperblockDefect::Unsupported(why) => write!(f, "unsupported: {why}"),
            SuperblockDefect::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

/// Fields parsed from untrusted bytes whose checksum matched; geometry not
/// yet validated.
#[derive(Clone, Debug)]
pub struct DecodedSuperblock {
    fields: Superblock,
    sb_bytes: u32,
    clean_raw: u32,
    reserved_zero: bool,
}

impl Superblock {
    /// The label as text (lossy for invalid UTF-8).
    pub fn label_text(&self) -> String {
        let end = self
            .label
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LABEL_BYTES);
        String::from_utf8_lossy(&self.label[..end]).into_owned()
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            block_size: u64::from(self.block_size),
            total_blocks: self.total_blocks,
            journal_start: self.journal_start,
            journal_blocks: self.journal_blocks,
            pool_start: self.pool_start,
        }
    }

    /// Journal ring capacity in bytes.
    pub fn journal_capacity_bytes(&self) -> u64 {
        self.journal_blocks * BLOCK_SIZE
    }

    pub fn encode(&self) -> [u8; SUPERBLOCK_BYTES] {
        let mut bytes = [0u8; SUPERBLOCK_BYTES];
        bytes[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&SUPERBLOCK_MAGIC);
        put_u32(&mut bytes, OFF_VERSION, self.version);
        put_u32(&mut bytes, OFF_SB_BYTES, SUPERBLOCK_BYTES as u32);
        put_u64(&mut bytes, OFF_COMPAT, self.compat);
        put_u64(&mut bytes, OFF_INCOMPAT, self.incompat);
        put_u64(&mut bytes, OFF_RO_COMPAT, self.ro_compat);
        bytes[OFF_UUID..OFF_UUID + 16].copy_from_slice(&self.uuid);
        bytes[OFF_LABEL..OFF_LABEL + LABEL_BYTES].copy_from_slice(&self.label);
        put_u32(&mut bytes, OFF_BLOCK_SIZE, self.block_size);
        put_u32(&mut bytes, OFF_CLEAN, u32::from(self.clean));
        put_u64(&mut bytes, OFF_TOTAL_BLOCKS, self.total_blocks);
        put_u64(&mut bytes, OFF_JOURNAL_START, self.journal_start);
        put_u64(&mut bytes, OFF_JOURNAL_BLOCKS, self.journal_blocks);
        put_u64(&mut bytes, OFF_POOL_START, self.pool_start);
        put_u64(&mut bytes, OFF_CHECKPOINT_BLOCK, self.checkpoint_block);
        put_u64(&mut bytes, OFF_CHECKPOINT_GEN, self.checkpoint_gen);
        put_u32(
            &mut bytes,
            OFF_CHECKPOINT_DESC_CRC,
            self.checkpoint_desc_crc,
        );
        put_u64(&mut bytes, OFF_REPLAY_OFFSET, self.journal_replay_offset);
        put_u64(&mut bytes, OFF_REPLAY_SEQ, self.journal_replay_seq);
        put_u64(&mut bytes, OFF_JOURNAL_EPOCH, self.journal_epoch);
        put_u64(&mut bytes, OFF_SB_SEQ, self.sb_seq);
        put_u64(&mut bytes, OFF_MOUNT_COUNT, self.mount_count);
        put_u64(&mut bytes, OFF_CREATED, self.created_secs);
        put_u64(&mut bytes, OFF_LAST_MOUNTED, self.last_mounted_secs);
        put_u64(&mut bytes, OFF_REPLAY_EPOCH, self.journal_replay_epoch);
        let crc = crc32c::crc32c(&bytes[..OFF_CRC]);
        put_u32(&mut bytes, OFF_CRC, crc);
        bytes
    }
}

impl DecodedSuperblock {
    /// Parse untrusted bytes: magic and checksum only.
    pub fn decode(bytes: &[u8; SUPERBLOCK_BYTES]) -> Result<DecodedSuperblock, SuperblockDefect> {
        if bytes[OFF_MAGIC..OFF_MAGIC + 8] != SUPERBLOCK_MAGIC {
            return Err(SuperblockDefect::NoMagic);
        }
        let stored = le_u32(bytes, OFF_CRC);
        let computed = crc32c::crc32c(&bytes[..OFF_CRC]);
        if stored != computed {
            return Err(SuperblockDefect::BadChecksum { stored, computed });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[OFF_UUID..OFF_UUID + 16]);
        let mut label = [0u8; LABEL_BYTES];
        label.copy_from_slice(&bytes[OFF_LABEL..OFF_LABEL + LABEL_BYTES]);
        let clean_raw = le_u32(bytes, OFF_CLEAN);
        let reserved_zero = le_u32(bytes, OFF_RESERVED0) == 0
            && bytes[OFF_RESERVED..OFF_CRC].iter().all(|&b| b == 0);
        Ok(DecodedSuperblock {
            fields: Superblock {
                version: le_u32(bytes, OFF_VERSION),
                compat: le_u64(bytes, OFF_COMPAT),
                incompat: le_u64(bytes, OFF_INCOMPAT),
                ro_compat: le_u64(bytes, OFF_RO_COMPAT),
                uuid,
                label,
                block_size: le_u32(bytes, OFF_BLOCK_SIZE),
                clean: clean_raw == 1,
                total_blocks: le_u64(bytes, OFF_TOTAL_BLOCKS),
                journal_start: le_u64(bytes, OFF_JOURNAL_START),
                journal_blocks: le_u64(bytes, OFF_JOURNAL_BLOCKS),
                pool_start: le_u64(bytes, OFF_POOL_START),
                checkpoint_block: le_u64(bytes, OFF_CHECKPOINT_BLOCK),
                checkpoint_gen: le_u64(bytes, OFF_CHECKPOINT_GEN),
                checkpoint_desc_crc: le_u32(bytes, OFF_CHECKPOINT_DESC_CRC),
                journal_replay_offset: le_u64(bytes, OFF_REPLAY_OFFSET),
                journal_replay_seq: le_u64(bytes, OFF_REPLAY_SEQ),
                journal_epoch: le_u64(bytes, OFF_JOURNAL_EPOCH),
                journal_replay_epoch: le_u64(bytes, OFF_REPLAY_EPOCH),
                sb_seq: le_u64(bytes, OFF_SB_SEQ),
                mount_count: le_u64(bytes, OFF_MOUNT_COUNT),
                created_secs: le_u64(bytes, OFF_CREATED),
                last_mounted_secs: le_u64(bytes, OFF_LAST_MOUNTED),
            },
            sb_bytes: le_u32(bytes, OFF_SB_BYTES),
            clean_raw,
            reserved_zero,
        })
    }

    /// The sequence number (for ordering copies before validation finishes).
    pub fn sb_seq(&self) -> u64 {
        self.fields.sb_seq
    }

    /// Check version, features and geometry against a region of
    /// `media_bytes` bytes.
    pub fn validate(self, media_bytes: u64) -> Result<Superblock, SuperblockDefect> {
        let sb = self.fields;
        let invalid = |why: String| Err(SuperblockDefect::Invalid(why));
        if sb.version > FORMAT_VERSION {
            return Err(SuperblockDefect::Unsupported(format!(
                "format version {} (this cowdax reads up to {FORMAT_VERSION})",
                sb.version
            )));
        }
        if sb.version == 0 {
            return invalid("format version 0".into());
        }
        let unknown_incompat = sb.incompat & !INCOMPAT_SUPPORTED;
        if unknown_incompat != 0 {
            return Err(SuperblockDefect::Unsupported(format!(
                "unknown incompatible features {unknown_incompat:#x}"
            )));
        }
        if self.sb_bytes as usize != SUPERBLOCK_BYTES {
            return invalid(format!("superblock size {}", self.sb_bytes));
        }
        if u64::from(sb.block_size) != BLOCK_SIZE {
            return Err(SuperblockDefect::Unsupported(format!(
                "block size {} (only {BLOCK_SIZE} is supported)",
                sb.block_size
            )));
        }
        if self.clean_raw > 1 {
            return invalid(format!("clean flag {}", self.clean_raw));
        }
        if !self.reserved_zero {
            return invalid("reserved bytes are not zero".into());
        }
        if sb.label[LABEL_BYTES - 1] != 0 {
            return invalid("label is not NUL terminated".into());
        }
        if sb.journal_start != JOURNAL_START_BLOCK {
            return invalid(format!("journal starts at block {}", sb.journal_start));
        }
        if sb.journal_blocks < MIN_JOURNAL_BLOCKS || sb.journal_blocks > MAX_JOURNAL_BLOCKS {
            return invalid(format!("journal of {} blocks", sb.journal_blocks));
        }
        // journal_blocks is bounded above, so this cannot overflow.
        if sb.pool_start != sb.journal_start + sb.journal_blocks {
            return invalid(format!(
                "pool starts at block {} instead of {}",
                sb.pool_start,
                sb.journal_start + sb.journal_blocks
            ));
        }
        if sb.total_blocks < sb.pool_start + MIN_POOL_BLOCKS {
            return invalid(format!(
                "{} blocks in total leave no pool after block {}",
                sb.total_blocks, sb.pool_start
            ));
        }
        let region_blocks = media_bytes / BLOCK_SIZE;
        if sb.total_blocks > region_blocks {
            return invalid(format!(
                "filesystem has {} blocks but the region only {} (truncated image?)",
                sb.total_blocks, region_blocks
            ));
        }
        let capacity = sb.journal_blocks * BLOCK_SIZE;
        if sb.journal_replay_offset >= capacity
            || sb.journal_replay_offset % super::journal::RECORD_ALIGN_BYTES != 0
        {
            return invalid(format!(
                "journal replay offset {} outside the ring of {capacity} bytes or misaligned",
                sb.journal_replay_offset
            ));
        }
        for (name, value) in [
            ("superblock sequence", sb.sb_seq),
            ("journal replay sequence", sb.journal_replay_seq),
            ("journal epoch", sb.journal_epoch),
            ("checkpoint generation", sb.checkpoint_gen),
            ("mount count", sb.mount_count),
        ] {
            if value > COUNTER_MAX {
                return invalid(format!("{name} {value} is out of range"));
            }
        }
        if sb.journal_replay_epoch > sb.journal_epoch {
            return invalid(format!(
                "journal replay epoch {} above the journal epoch {}",
                sb.journal_replay_epoch, sb.journal_epoch
            ));
        }
        if sb.journal_replay_seq == 0 {
            return invalid("journal replay sequence 0".into());
        }
        match (sb.checkpoint_block, sb.checkpoint_gen) {
            (0, 0) => {}
            (0, _) | (_, 0) => {
                return invalid(format!(
                    "checkpoint block {} with generation {}",
                    sb.checkpoint_block, sb.checkpoint_gen
                ))
            }
            (block, _) if block < sb.pool_start || block >= sb.total_blocks => {
                return invalid(format!("checkpoint block {block} outside the pool"))
            }
            _ => {}
        }
        Ok(sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        let mut label = [0u8; LABEL_BYTES];
        label[..4].copy_from_slice(b"test");
        Superblock {
            version: FORMAT_VERSION,
            compat: 0,
            incompat: 0,
            ro_compat: 0,
            uuid: [7; 16],
            label,
            block_size: BLOCK_SIZE as u32,
            clean: true,
            total_blocks: 1000,
            journal_start: JOURNAL_START_BLOCK,
            journal_blocks: 64,
            pool_start: 66,
            checkpoint_block: 100,
            checkpoint_gen: 3,
            checkpoint_desc_crc: 0xdead_beef,
            journal_replay_offset: 128,
            journal_replay_seq: 17,
            journal_epoch: 2,
            journal_replay_epoch: 1,
            sb_seq: 9,
            mount_count: 4,
            created_secs: 1,
            last_mounted_secs: 2,
        }
    }

    #[test]
    fn encode_decode_validate_round_trips() {
        let sb = sample();
        let bytes = sb.encode();
        let decoded = DecodedSuperblock::decode(&bytes).unwrap();
        assert_eq!(decoded.validate(1000 * BLOCK_SIZE).unwrap(), sb);
        assert_eq!(sb.label_text(), "test");
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sample().encode();
        for bit in 0..SUPERBLOCK_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let ok = DecodedSuperblock::decode(&flipped)
                .ok()
                .and_then(|d| d.validate(1000 * BLOCK_SIZE).ok());
            assert!(ok.is_none(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn region_smaller_than_the_filesystem_is_rejected() {
        let decoded = DecodedSuperblock::decode(&sample().encode()).unwrap();
        let err = decoded.validate(999 * BLOCK_SIZE).unwrap_err();
        assert!(matches!(err, SuperblockDefect::Invalid(ref why) if why.contains("truncated")));
    }

    #[test]
    fn counters_near_overflow_are_invalid() {
        for field in 0..5 {
            let mut sb = sample();
            let value = u64::MAX;
            match field {
                0 => sb.sb_seq = value,
                1 => sb.journal_replay_seq = value,
                2 => sb.journal_epoch = value,
                3 => sb.checkpoint_gen = value,
                _ => sb.mount_count = value,
            }
            let err = DecodedSuperblock::decode(&sb.encode())
                .unwrap()
                .validate(1000 * BLOCK_SIZE)
                .unwrap_err();
            assert!(
                matches!(err, SuperblockDefect::Invalid(ref why) if why.contains("out of range")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn newer_version_and_unknown_incompat_features_are_unsupported() {
        let mut sb = sample();
        sb.version = FORMAT_VERSION + 1;
        let err = DecodedSuperblock::decode(&sb.encode())
            .unwrap()
            .validate(1 << 30)
            .unwrap_err();
        assert!(matches!(err, SuperblockDefect::Unsupported(_)));
        let mut sb = sample();
        sb.incompat = 1 << 40;
        let err = DecodedSuperblock::decode(&sb.encode())
            .unwrap()
            .validate(1 << 30)
            .unwrap_err();
        assert!(matches!(err, SuperblockDefect::Unsupported(_)));
    }
}
