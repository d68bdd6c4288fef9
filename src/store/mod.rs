//! On-media format and the crash-safe metadata store (DESIGN.md §4):
//! two superblocks, a journal ring of checksummed transactions, and
//! checkpoints written to fresh pool blocks and published by a superblock
//! switch.
//!
//! The store is a *log + snapshot* container: transaction payloads and the
//! checkpoint payload are opaque bytes defined by the filesystem core
//! (`crate::fs`). The store guarantees:
//! * `commit(p)` appends `p` as one transaction; after a crash, recovery
//!   yields a prefix of the committed transactions (in order), each whole or
//!   absent; every transaction covered by a completed `sync` (or committed on
//!   byte-persistent media, where commit fences) is in that prefix.
//! * `write_checkpoint(p, extents)` atomically replaces the checkpoint with
//!   `p` and empties the journal: after a crash, recovery yields either the old
//!   checkpoint + the journal as it was, or the new checkpoint + nothing.
//!
//! Layout (block numbers, 4 KiB blocks):
//! `| 0: superblock A | 1: superblock B | 2..2+J: journal ring | pool … |`
//! The pool holds file data and checkpoint blocks; which pool blocks are in
//! use is derived by the core (extent maps + checkpoint extents).
//!
//! The byte-level format, the commit protocol and the recovery rules are in
//! docs/FORMAT.md.

// The format is little-endian everywhere, spelled out at every conversion.
#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

pub mod checkpoint;
pub mod inspect;
pub mod journal;
mod layout;
mod le;
pub mod superblock;

pub use inspect::{inspect, Inspection};
pub use layout::{
    Geometry, PhysExtent, BLOCK_SIZE, DEFAULT_JOURNAL_DIVISOR, DEFAULT_JOURNAL_MIN_BLOCKS,
    MAX_JOURNAL_BLOCKS, MIN_JOURNAL_BLOCKS, MIN_POOL_BLOCKS,
};
pub use superblock::Superblock;

/// Options for `mkfs`.
#[derive(Clone, Debug, Default)]
pub struct FormatOptions {
    /// Volume label (at most 63 bytes of UTF-8).
    pub label: String,
    /// Journal size in bytes (rounded up to blocks); `None` picks a default
    /// scaled to the region size.
    pub journal_bytes: Option<u64>,
    /// Fixed UUID (tests); `None` generates a random one.
    pub uuid: Option<[u8; 16]>,
}

use std::sync::Arc;

use crate::media::{Media, MediaError};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The region holds no cowdax filesystem (no valid superblock magic).
    #[error("not a cowdax filesystem{0}")]
    NotCowdax(String),
    /// A cowdax filesystem that this version cannot read.
    #[error("unsupported cowdax format: {0}")]
    Unsupported(String),
    /// A structure failed validation (checksum, bounds, sequence).
    #[error("corrupt filesystem: {0}")]
    Corrupt(String),
    /// The region cannot hold a filesystem with these options.
    #[error("{0}")]
    TooSmall(String),
    /// The journal has no room for this transaction: checkpoint first.
    #[error("journal full")]
    JournalFull,
    /// One transaction larger than the journal can ever hold.
    #[error("transaction of {0} bytes exceeds the journal's limit")]
    TransactionTooLarge(usize),
    /// The extents given for a checkpoint are too few or too fragmented.
    #[error("checkpoint needs {needed} blocks in at most {max_extents} extents")]
    CheckpointSpace { needed: u64, max_extents: usize },
    /// The extents given for a checkpoint are unusable (outside the pool,
    /// overlapping each other or the live checkpoint).
    #[error("invalid checkpoint extents: {0}")]
    InvalidExtents(String),
    /// Opened read-only.
    #[error("filesystem opened read-only")]
    ReadOnly,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What `Store::open` recovered, for the core to rebuild its state from.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The current checkpoint payload (`None` on a freshly formatted region,
    /// and after [`Store::open_in_place`]).
    pub checkpoint: Option<Vec<u8>>,
    /// After [`Store::open_in_place`]: where the current checkpoint payload
    /// lies on media (byte offset, length; in order), its checksum verified.
    /// `None` on a freshly formatted region and after [`Store::open`].
    pub checkpoint_in_place: Option<Vec<(u64, u64)>>,
    /// Pool blocks holding the checkpoint (descriptor included): in use.
    pub checkpoint_extents: Vec<PhysExtent>,
    /// Transaction payloads to replay on top of the checkpoint, in order.
    pub transactions: Vec<Vec<u8>>,
    /// The filesystem was unmounted cleanly last time.
    pub was_clean: bool,
}

/// Read-only or read-write access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// In-memory state of the journal ring.
#[derive(Clone, Copy, Debug)]
struct JournalState {
    ring: journal::Ring,
    /// Ring offset of the next record.
    head_offset: u64,
    /// Bytes in use from the replay point (tail) to the head, wrap waste included.
    used_bytes: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Epoch written into new records.
    epoch: u64,
}

/// The crash-safe metadata store. Not internally synchronised: the core
/// wraps it in a mutex.
pub struct Store {
    media: Arc<dyn Media>,
    access: Access,
    /// The current superblock (as last written or loaded).
    sb: Superblock,
    /// Slot (0 = A, 1 = B) holding `sb`; the next superblock write goes to
    /// the other slot.
    current_slot: usize,
    /// Highest superblock sequence seen on either copy; the next write uses
    /// one more, so it always wins over both.
    max_sb_seq: u64,
    journal: JournalState,
    durable_seq: u64,
    checkpoint_extents: Vec<PhysExtent>,
    byte_persistent: bool,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random (version 4) UUID from the kernel's CSPRNG (getrandom(2)).
pub fn random_uuid_v4() -> std::io::Result<[u8; 16]> {
    let mut uuid = [0u8; 16];
    getrandom::fill(&mut uuid)?;
    Ok(uuid_v4(uuid))
}

/// Marks 16 random bytes as an RFC 4122 version 4, variant 1 UUID.
fn uuid_v4(mut uuid: [u8; 16]) -> [u8; 16] {
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

fn random_uuid() -> [u8; 16] {
    random_uuid_v4().unwrap_or_else(|err| {
        // Uniqueness, not secrecy, is what the UUID is for.
        log::warn!("no random bytes ({err}); deriving the UUID from time and pid");
        let mut uuid = [0u8; 16];
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        uuid[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        uuid[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        let mix = crc32c::crc32c(&uuid[..12]);
        uuid[12..].copy_from_slice(&mix.to_le_bytes());
        uuid_v4(uuid)
    })
}

/// Journal blocks for a region of `total_blocks` blocks with these options.
fn journal_blocks_for(total_blocks: u64, opts: &FormatOptions) -> Result<u64> {
    match opts.journal_bytes {
        Some(bytes) => {
            let blocks = bytes.div_ceil(BLOCK_SIZE);
            if !(MIN_JOURNAL_BLOCKS..=MAX_JOURNAL_BLOCKS).contains(&blocks) {
                return Err(StoreError::TooSmall(format!(
                    "journal size {bytes} bytes is outside the supported range {}..={} bytes",
                    MIN_JOURNAL_BLOCKS * BLOCK_SIZE,
                    MAX_JOURNAL_BLOCKS * BLOCK_SIZE
                )));
            }
            Ok(blocks)
        }
        None => Ok((total_blocks / DEFAULT_JOURNAL_DIVISOR)
            .clamp(DEFAULT_JOURNAL_MIN_BLOCKS, MAX_JOURNAL_BLOCKS)),
    }
}

/// Smallest region `format` accepts with these options, in bytes.
pub fn min_region_bytes(opts: &FormatOptions) -> u64 {
    let journal_blocks = journal_blocks_for(0, opts).unwrap_or(DEFAULT_JOURNAL_MIN_BLOCKS);
    (superblock::JOURNAL_START_BLOCK + journal_blocks + MIN_POOL_BLOCKS) * BLOCK_SIZE
}

/// A superblock copy as found on media.
pub(crate) struct SlotRead {
    pub slot: usize,
    pub result: std::result::Result<Superblock, superblock::SuperblockDefect>,
}

pub(crate) fn read_superblocks(media: &dyn Media) -> Result<[SlotRead; 2]> {
    let read = |slot: usize| -> Result<SlotRead> {
        let mut bytes = [0u8; superblock::SUPERBLOCK_BYTES];
        let off = superblock::SUPERBLOCK_BLOCKS[slot] * BLOCK_SIZE;
        let result = if off + bytes.len() as u64 > media.len() {
            Err(superblock::SuperblockDefect::Invalid(format!(
                "region of {} bytes too small to hold it",
                media.len()
            )))
        } else {
            media.read(off, &mut bytes)?;
            superblock::DecodedSuperblock::decode(&bytes).and_then(|d| d.validate(media.len()))
        };
        Ok(SlotRead { slot, result })
    };
    Ok([read(0)?, read(1)?])
}

pub(crate) fn slot_name(slot: usize) -> &'static str {
    if slot == 0 {
        "A"
    } else {
        "B"
    }
}

pub(crate) fn ring_of(sb: &Superblock) -> journal::Ring {
    journal::Ring {
        base_bytes: sb.journal_start * BLOCK_SIZE,
        capacity_bytes: sb.journal_capacity_bytes(),
        uuid: sb.uuid,
    }
}

/// What one superblock leads to: its checkpoint and journal.
pub(crate) struct LoadedState {
    checkpoint: Option<Vec<u8>>,
    checkpoint_in_place: Option<Vec<(u64, u64)>>,
    checkpoint_extents: Vec<PhysExtent>,
    scan: journal::Scan,
}

/// `in_place`: verify the checkpoint payload where it lies instead of
/// copying it out (see [`Recovered::checkpoint_in_place`]).
fn load_state(
    media: &dyn Media,
    sb: &Superblock,
    in_place: bool,
) -> std::result::Result<LoadedState, String> {
    let (checkpoint, checkpoint_in_place, checkpoint_extents) = if sb.checkpoint_block == 0 {
        (None, None, Vec::new())
    } else {
        let descriptor = checkpoint::read_descriptor(media, sb)?;
        if in_place {
            let runs = checkpoint::verify_payload_in_place(media, &sb.uuid, &descriptor)?;
            (None, Some(runs), descriptor.extents)
        } else {
            let payload = checkpoint::read_payload(media, &sb.uuid, &descriptor)?;
            (Some(payload), None, descriptor.extents)
        }
    };
    let scan = ring_of(sb).scan(
        media,
        sb.journal_replay_offset,
        sb.journal_replay_seq,
        sb.journal_replay_epoch,
    );
    Ok(LoadedState {
        checkpoint,
        checkpoint_in_place,
        checkpoint_extents,
        scan,
    })
}

impl Store {
    /// Write a fresh filesystem (both superblocks, empty journal, no
    /// checkpoint) to `media`. Overwrites whatever was there.
    pub fn format(media: Arc<dyn Media>, opts: &FormatOptions) -> Result<Geometry> {
        if opts.label.len() >= superblock::LABEL_BYTES || opts.label.contains('\0') {
            return Err(StoreError::TooSmall(format!(
                "label {:?} is longer than {} bytes or contains NUL",
                opts.label,
                superblock::LABEL_BYTES - 1
            )));
        }
        let total_blocks = media.len() / BLOCK_SIZE;
        let journal_blocks = journal_blocks_for(total_blocks, opts)?;
        let min_bytes = min_region_bytes(opts);
        let pool_start = superblock::JOURNAL_START_BLOCK + journal_blocks;
        if total_blocks < pool_start + MIN_POOL_BLOCKS {
            return Err(StoreError::TooSmall(format!(
                "region of {} bytes is too small: cowdax needs at least {min_bytes} bytes \
                 ({} KiB) with a journal of {} KiB",
                media.len(),
                min_bytes / 1024,
                journal_blocks * BLOCK_SIZE / 1024
            )));
        }
        let mut label = [0u8; superblock::LABEL_BYTES];
        label[..opts.label.len()].copy_from_slice(opts.label.as_bytes());
        let now = now_secs();
        let mut sb = Superblock {
            version: superblock::FORMAT_VERSION,
            compat: 0,
            incompat: 0,
            ro_compat: 0,
            uuid: opts.uuid.unwrap_or_else(random_uuid),
            label,
            block_size: BLOCK_SIZE as u32,
            clean: true,
            total_blocks,
            journal_start: superblock::JOURNAL_START_BLOCK,
            journal_blocks,
            pool_start,
            checkpoint_block: 0,
            checkpoint_gen: 0,
            checkpoint_desc_crc: 0,
            journal_replay_offset: 0,
            journal_replay_seq: 1,
            journal_epoch: 1,
            journal_replay_epoch: 1,
            sb_seq: 1,
            mount_count: 0,
            created_secs: now,
            last_mounted_secs: 0,
        };
        // Records of an earlier filesystem never verify (the checksum is
        // seeded with the new UUID); zeroing the first journal block makes a
        // fresh image's log visibly empty to `dump` as well.
        let journal_off = sb.journal_start * BLOCK_SIZE;
        media.write_zeroes(journal_off, BLOCK_SIZE)?;
        media.persist(journal_off, BLOCK_SIZE)?;
        for slot in [1usize, 0] {
            let off = superblock::SUPERBLOCK_BLOCKS[slot] * BLOCK_SIZE;
            let mut block = vec![0u8; BLOCK_SIZE as usize];
            // A is written with the higher sequence: it is current after mkfs.
            sb.sb_seq = 2 - slot as u64;
            block[..superblock::SUPERBLOCK_BYTES].copy_from_slice(&sb.encode());
            media.write(off, &block)?;
            media.persist(off, BLOCK_SIZE)?;
        }
        media.fence()?;
        log::info!(
            "formatted {}: {} blocks, journal {} KiB, pool from block {}",
            media.describe(),
            total_blocks,
            journal_blocks * BLOCK_SIZE / 1024,
            pool_start
        );
        Ok(sb.geometry())
    }

    /// Validate the superblocks, load the checkpoint and read the journal.
    /// With `Access::ReadWrite` also marks the filesystem as mounted (not
    /// clean). With `Access::ReadOnly` nothing is ever written.
    pub fn open(media: Arc<dyn Media>, access: Access) -> Result<(Store, Recovered)> {
        Self::open_with(media, access, false)
    }

    /// [`Store::open`] without copying the checkpoint payload out of the
    /// media: its checksum is verified in place and
    /// [`Recovered::checkpoint_in_place`] says where it lies (a mount reads
    /// it once from there instead of from a fresh copy of 100+ MiB).
    pub fn open_in_place(media: Arc<dyn Media>, access: Access) -> Result<(Store, Recovered)> {
        Self::open_with(media, access, true)
    }

    fn open_with(
        media: Arc<dyn Media>,
        access: Access,
        in_place: bool,
    ) -> Result<(Store, Recovered)> {
        let slots = read_superblocks(media.as_ref())?;
        // A copy written by a newer cowdax must not be passed over in favour
        // of an older copy: that would silently roll the filesystem back.
        for read in &slots {
            if let Err(superblock::SuperblockDefect::Unsupported(why)) = &read.result {
                return Err(StoreError::Unsupported(format!(
                    "superblock {}: {why}",
                    slot_name(read.slot)
                )));
            }
        }
        let mut valid: Vec<(usize, Superblock)> = Vec::new();
        for read in &slots {
            match &read.result {
                Ok(sb) => valid.push((read.slot, sb.clone())),
                Err(defect) => {
                    if !matches!(defect, superblock::SuperblockDefect::NoMagic)
                        || slots.iter().any(|other| other.result.is_ok())
                    {
                        log::warn!(
                            "superblock {} of {} is not usable: {defect}",
                            slot_name(read.slot),
                            media.describe()
                        );
                    }
                }
            }
        }
        if valid.is_empty() {
            return Err(Self::no_valid_superblock(&slots));
        }
        // Highest sequence first.
        valid.sort_by_key(|(_, sb)| std::cmp::Reverse(sb.sb_seq));
        let max_sb_seq = valid[0].1.sb_seq;
        let (primary_slot, primary) = valid[0].clone();
        if let (Some((_, other)), Access::ReadWrite) = (valid.get(1), access) {
            if other.uuid != primary.uuid {
                log::warn!("the two superblocks carry different UUIDs; using the newer one");
            }
        }
        let (slot, sb, state) = match load_state(media.as_ref(), &primary, in_place) {
            Ok(state) => (primary_slot, primary, state),
            Err(why) => match Self::fallback(media.as_ref(), &primary, valid.get(1), in_place) {
                Some((slot, sb, state)) => {
                    log::warn!(
                        "superblock {} (seq {}) references a bad checkpoint ({why}); \
                         using superblock {} (seq {}) whose checkpoint and journal cover it",
                        slot_name(primary_slot),
                        primary.sb_seq,
                        slot_name(slot),
                        sb.sb_seq
                    );
                    (slot, sb, state)
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "superblock {} (seq {}) references a bad checkpoint: {why}",
                        slot_name(primary_slot),
                        primary.sb_seq
                    )))
                }
            },
        };
        if sb.ro_compat & !superblock::RO_COMPAT_SUPPORTED != 0 && access == Access::ReadWrite {
            return Err(StoreError::Unsupported(format!(
                "unknown read-only-compatible features {:#x}: open read-only",
                sb.ro_compat & !superblock::RO_COMPAT_SUPPORTED
            )));
        }
        let scan = state.scan;
        log::debug!(
            "journal: {} transactions from seq {} at offset {}, stopped: {}",
            scan.records.len(),
            sb.journal_replay_seq,
            sb.journal_replay_offset,
            scan.stop
        );
        let last_seq = scan.next_seq - 1;
        let recovered = Recovered {
            checkpoint: state.checkpoint,
            checkpoint_in_place: state.checkpoint_in_place,
            checkpoint_extents: state.checkpoint_extents.clone(),
            transactions: scan.records.into_iter().map(|r| r.payload).collect(),
            was_clean: sb.clean,
        };
        let journal = JournalState {
            ring: ring_of(&sb),
            head_offset: scan.head_offset,
            used_bytes: scan.used_bytes,
            next_seq: scan.next_seq,
            // Above every epoch any record can carry: records are written
            // only after their run's epoch reached a durable superblock.
            epoch: valid
                .iter()
                .map(|(_, copy)| copy.journal_epoch)
                .fold(scan.max_epoch, u64::max),
        };
        let mut store = Store {
            byte_persistent: media.kind().is_byte_persistent(),
            media,
            access,
            sb,
            current_slot: slot,
            max_sb_seq,
            journal,
            durable_seq: last_seq,
            checkpoint_extents: state.checkpoint_extents,
        };
        if access == Access::ReadWrite {
            // Records replayed from a page cache may not have reached the
            // device yet (the previous process died before syncing): persist
            // the live log so the superblock's fence below covers it, and
            // durable_seq() = last_seq() is true.
            store.persist_live_log()?;
            // A new epoch before any new record: leftovers of the crashed run
            // behind the replay stop point can never join the log again.
            let mut sb = store.sb.clone();
            sb.clean = false;
            sb.mount_count += 1;
            sb.last_mounted_secs = now_secs();
            sb.journal_epoch = store.journal.epoch + 1;
            store.write_superblock(sb)?;
            store.journal.epoch = store.sb.journal_epoch;
        }
        Ok((store, recovered))
    }

    fn no_valid_superblock(slots: &[SlotRead; 2]) -> StoreError {
        use superblock::SuperblockDefect;
        let describe = |read: &SlotRead| match &read.result {
            Ok(_) => String::new(),
            Err(defect) => format!("superblock {}: {defect}", slot_name(read.slot)),
        };
        if slots
            .iter()
            .all(|r| matches!(r.result, Err(SuperblockDefect::NoMagic)))
        {
            return StoreError::NotCowdax(
                " (no cowdax superblock magic in block 0 or 1; format it with `cowdax mkfs`)"
                    .into(),
            );
        }
        StoreError::Corrupt(format!(
            "no valid superblock: {}; {}",
            describe(&slots[0]),
            describe(&slots[1])
        ))
    }

    /// The older superblock may stand in for a newer one whose checkpoint is
    /// bad only if its own checkpoint verifies and its journal, replayed,
    /// reaches everything the newer checkpoint contained. Then the recovered
    /// state is at least as new as the newer superblock's would have been,
    /// and no block freed after the switch can be referenced by it (every
    /// transaction since is replayed). Otherwise the fallback would roll the
    /// filesystem back past blocks that may have been reused: refuse.
    pub(crate) fn fallback(
        media: &dyn Media,
        primary: &Superblock,
        other: Option<&(usize, Superblock)>,
        in_place: bool,
    ) -> Option<(usize, Superblock, LoadedState)> {
        let (slot, sb) = other?;
        if sb.uuid != primary.uuid || sb.geometry() != primary.geometry() {
            return None;
        }
        if sb.checkpoint_block == primary.checkpoint_block
            && sb.checkpoint_gen == primary.checkpoint_gen
        {
            return None;
        }
        let state = load_state(media, sb, in_place).ok()?;
        if state.scan.next_seq < primary.journal_replay_seq {
            log::warn!(
                "superblock {} cannot stand in: its journal ends at seq {} before the newer \
                 checkpoint's seq {}",
                slot_name(*slot),
                state.scan.next_seq,
                primary.journal_replay_seq
            );
            return None;
        }
        Some((*slot, sb.clone(), state))
    }

    fn persist_live_log(&self) -> Result<()> {
        let journal = &self.journal;
        let base = journal.ring.base_bytes;
        let tail = self.sb.journal_replay_offset;
        if journal.used_bytes == 0 {
            return Ok(());
        }
        if tail < journal.head_offset {
            self.media
                .persist(base + tail, journal.head_offset - tail)?;
        } else {
            // The live log wraps (or fills the whole ring).
            self.media
                .persist(base + tail, journal.ring.capacity_bytes - tail)?;
            if journal.head_offset > 0 {
                self.media.persist(base, journal.head_offset)?;
            }
        }
        Ok(())
    }

    /// Write `sb` to the other slot with a sequence above both copies, then
    /// persist and fence. On success it is the current superblock.
    fn write_superblock(&mut self, mut sb: Superblock) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        let slot = 1 - self.current_slot;
        sb.sb_seq = self.max_sb_seq + 1;
        let off = superblock::SUPERBLOCK_BLOCKS[slot] * BLOCK_SIZE;
        self.media.write(off, &sb.encode())?;
        self.media
            .persist(off, superblock::SUPERBLOCK_BYTES as u64)?;
        self.fence()?;
        self.max_sb_seq = sb.sb_seq;
        self.current_slot = slot;
        self.sb = sb;
        Ok(())
    }

    fn fence(&mut self) -> Result<()> {
        self.media.fence()?;
        // Every record was persisted by its commit, so a fence covers them all.
        self.durable_seq = self.last_seq();
        Ok(())
    }

    pub fn media(&self) -> &Arc<dyn Media> {
        &self.media
    }

    pub fn geometry(&self) -> Geometry {
        self.sb.geometry()
    }

    /// The current superblock (for `dump`, fsck and tests).
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Extents of the live checkpoint (descriptor included).
    pub fn checkpoint_extents(&self) -> &[PhysExtent] {
        &self.checkpoint_extents
    }

    /// Append one transaction. Persisted before return; also fenced (durable)
    /// when the media is byte-persistent. Returns its sequence number.
    pub fn commit(&mut self, payload: &[u8]) -> Result<u64> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        if payload.len() > self.max_transaction_bytes() {
            return Err(StoreError::TransactionTooLarge(payload.len()));
        }
        if !self.commit_fits(payload.len()) {
            return Err(StoreError::JournalFull);
        }
        let journal = self.journal;
        let cap = journal.ring.capacity_bytes;
        let record_bytes = journal::record_bytes(payload.len() as u64);
        let wrap_waste = if cap - journal.head_offset < record_bytes {
            cap - journal.head_offset
        } else {
            0
        };
        let seq = journal.next_seq;
        let uuid = &journal.ring.uuid;
        let base = journal.ring.base_bytes;
        let mut record_offset = journal.head_offset;
        if wrap_waste > 0 {
            // The marker carries the sequence of the record that follows it
            // at offset 0, so a stale marker of an older lap never matches.
            let marker = journal::encode_record(uuid, journal::KIND_WRAP, seq, journal.epoch, &[]);
            self.media.write(base + record_offset, &marker)?;
            self.media
                .persist(base + record_offset, marker.len() as u64)?;
            record_offset = 0;
        }
        let record =
            journal::encode_record(uuid, journal::KIND_TRANSACTION, seq, journal.epoch, payload);
        self.media.write(base + record_offset, &record)?;
        self.media.persist(base + record_offset, record_bytes)?;
        let mut head_offset = record_offset + record_bytes;
        if head_offset == cap {
            head_offset = 0;
        }
        self.journal.head_offset = head_offset;
        self.journal.used_bytes += wrap_waste + record_bytes;
        self.journal.next_seq = seq + 1;
        if self.byte_persistent {
            self.fence()?;
        }
        Ok(seq)
    }

    /// Make every committed transaction durable. Always fences (even when
    /// every transaction is already durable), so it also completes any other
    /// `persist` issued on the media before it.
    pub fn sync(&mut self) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Ok(());
        }
        self.fence()
    }

    /// Sequence number of the last committed transaction.
    pub fn last_seq(&self) -> u64 {
        self.journal.next_seq - 1
    }

    /// Every transaction with a sequence number ≤ this is durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Whether a transaction of `payload_len` bytes fits in the ring now
    /// (wrap waste included). When false, `commit` would return
    /// `JournalFull` (or `TransactionTooLarge`): checkpoint first.
    pub fn commit_fits(&self, payload_len: usize) -> bool {
        if payload_len > self.max_transaction_bytes() {
            return false;
        }
        let journal = &self.journal;
        let cap = journal.ring.capacity_bytes;
        let record_bytes = journal::record_bytes(payload_len as u64);
        let wrap_waste = if cap - journal.head_offset < record_bytes {
            cap - journal.head_offset
        } else {
            0
        };
        journal.used_bytes + wrap_waste + record_bytes <= cap
    }

    /// Bytes still free in the journal ring (for the core's checkpoint policy).
    /// A record also needs the space up to the ring end when it does not fit
    /// there: use [`Store::commit_fits`] for an exact answer.
    pub fn journal_free_bytes(&self) -> u64 {
        self.journal.ring.capacity_bytes - self.journal.used_bytes
    }

    /// Capacity of the journal ring in bytes.
    pub fn journal_capacity_bytes(&self) -> u64 {
        self.journal.ring.capacity_bytes
    }

    /// Largest payload one transaction may carry: half the ring minus a
    /// header, so that right after a checkpoint a transaction of this size
    /// always fits wherever the head is (before the end or, after a wrap
    /// marker, at offset 0).
    pub fn max_transaction_bytes(&self) -> usize {
        let half = self.journal.ring.capacity_bytes / 2;
        (half - journal::RECORD_HEADER_BYTES) as usize
    }

    /// Pool blocks a checkpoint of `payload_len` bytes needs (descriptor
    /// included), and the most extents they may be spread over.
    pub fn checkpoint_blocks_needed(&self, payload_len: usize) -> (u64, usize) {
        (
            checkpoint::blocks_needed(payload_len as u64),
            checkpoint::MAX_CHECKPOINT_EXTENTS,
        )
    }

    /// Write `payload` as the new checkpoint into `extents` (freshly
    /// allocated pool blocks, never the live checkpoint's), publish it by a
    /// superblock switch and empty the journal. Returns the old checkpoint's
    /// extents, which are free once this returns. The descriptor goes to the
    /// first block of `extents[0]`; all given extents (even blocks beyond
    /// what the payload needs) belong to the checkpoint until it is replaced.
    pub fn write_checkpoint(
        &mut self,
        payload: &[u8],
        extents: &[PhysExtent],
    ) -> Result<Vec<PhysExtent>> {
        if self.access == Access::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        let (needed, max_extents) = self.checkpoint_blocks_needed(payload.len());
        if extents.is_empty() || extents.len() > max_extents {
            return Err(StoreError::CheckpointSpace {
                needed,
                max_extents,
            });
        }
        let total =
            checkpoint::check_extents(&self.sb, extents).map_err(StoreError::InvalidExtents)?;
        if total < needed {
            return Err(StoreError::CheckpointSpace {
                needed,
                max_extents,
            });
        }
        let mut combined = extents.to_vec();
        combined.extend_from_slice(&self.checkpoint_extents);
        if let Err(why) = checkpoint::check_extents(&self.sb, &combined) {
            return Err(StoreError::InvalidExtents(format!(
                "overlap with the live checkpoint ({why})"
            )));
        }
        let generation = self.sb.checkpoint_gen + 1;
        let descriptor = checkpoint::write(
            self.media.as_ref(),
            &self.sb.uuid,
            generation,
            self.last_seq(),
            payload,
            extents,
        )?;
        // The fence inside checkpoint::write made every persisted record durable.
        self.durable_seq = self.last_seq();
        let mut sb = self.sb.clone();
        sb.checkpoint_block = extents[0].start;
        sb.checkpoint_gen = generation;
        sb.checkpoint_desc_crc = descriptor.crc;
        sb.journal_replay_offset = self.journal.head_offset;
        sb.journal_replay_seq = self.journal.next_seq;
        sb.journal_epoch = self.journal.epoch;
        // Records from now on carry this epoch; anything older at or after
        // the new replay point is a leftover.
        sb.journal_replay_epoch = self.journal.epoch;
        self.write_superblock(sb)?;
        self.journal.used_bytes = 0;
        Ok(std::mem::replace(
            &mut self.checkpoint_extents,
            extents.to_vec(),
        ))
    }

    /// Record a clean unmount (call after a final checkpoint) or, with
    /// `false`, that the filesystem is in use.
    pub fn set_clean(&mut self, clean: bool) -> Result<()> {
        let mut sb = self.sb.clone();
        sb.clean = clean;
        self.write_superblock(sb)
    }
}
