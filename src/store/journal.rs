//! The journal ring: sequenced, checksummed transaction records
//! (docs/FORMAT.md §3).
//!
//! Invariants:
//! * records start on [`RECORD_ALIGN_BYTES`] boundaries and never straddle
//!   the ring end: a record that does not fit before the end is preceded by
//!   a wrap marker (kind [`KIND_WRAP`]) and written at offset 0;
//! * the live log is the chain of records starting at the superblock's
//!   replay offset/sequence; each record carries the next sequence number
//!   (a wrap marker carries the sequence of the record after it) and an epoch
//!   that never decreases along the chain;
//! * the checksum is seeded with the filesystem UUID, so records of an older
//!   filesystem formatted over the same region never verify.

use super::le::{le_u32, le_u64, put_u32, put_u64};
use crate::media::Media;

pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"CDJR");
pub const RECORD_HEADER_BYTES: u64 = 32;
/// Records start on cache-line boundaries so one record never shares a line
/// with the next (a torn neighbour cannot damage a durable record).
pub const RECORD_ALIGN_BYTES: u64 = 64;
pub const KIND_TRANSACTION: u16 = 1;
pub const KIND_WRAP: u16 = 2;

const OFF_MAGIC: usize = 0;
const OFF_KIND: usize = 4;
const OFF_FLAGS: usize = 6;
const OFF_SEQ: usize = 8;
const OFF_EPOCH: usize = 16;
const OFF_PAYLOAD_LEN: usize = 24;
const OFF_CRC: usize = 28;
const _: () = assert!(RECORD_HEADER_BYTES == 32);
const _: () = assert!(OFF_CRC + 4 == RECORD_HEADER_BYTES as usize);
const _: () = assert!(RECORD_HEADER_BYTES <= RECORD_ALIGN_BYTES);

/// Total bytes a record with `payload_len` payload bytes occupies.
pub fn record_bytes(payload_len: u64) -> u64 {
    (RECORD_HEADER_BYTES + payload_len).div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u16,
    pub seq: u64,
    pub epoch: u64,
    pub payload_len: u32,
    pub crc: u32,
}

fn record_crc(uuid: &[u8; 16], header: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(uuid);
    let crc = crc32c::crc32c_append(crc, &header[..OFF_CRC]);
    crc32c::crc32c_append(crc, payload)
}

/// Encode a whole record (header, payload, zero padding to the alignment).
pub fn encode_record(uuid: &[u8; 16], kind: u16, seq: u64, epoch: u64, payload: &[u8]) -> Vec<u8> {
    let total = record_bytes(payload.len() as u64) as usize;
    let mut bytes = vec![0u8; total];
    put_u32(&mut bytes, OFF_MAGIC, RECORD_MAGIC);
    bytes[OFF_KIND..OFF_KIND + 2].copy_from_slice(&kind.to_le_bytes());
    bytes[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&0u16.to_le_bytes());
    put_u64(&mut bytes, OFF_SEQ, seq);
    put_u64(&mut bytes, OFF_EPOCH, epoch);
    // Callers bound payloads by the ring capacity (≤ 256 MiB), so this fits.
    put_u32(&mut bytes, OFF_PAYLOAD_LEN, payload.len() as u32);
    let header_end = RECORD_HEADER_BYTES as usize;
    bytes[header_end..header_end + payload.len()].copy_from_slice(payload);
    let crc = record_crc(uuid, &bytes[..header_end], payload);
    put_u32(&mut bytes, OFF_CRC, crc);
    bytes
}

fn decode_header(bytes: &[u8; RECORD_HEADER_BYTES as usize]) -> Option<RecordHeader> {
    if le_u32(bytes, OFF_MAGIC) != RECORD_MAGIC {
        return None;
    }
    Some(RecordHeader {
        kind: u16::from_le_bytes([bytes[OFF_KIND], bytes[OFF_KIND + 1]]),
        seq: le_u64(bytes, OFF_SEQ),
        epoch: le_u64(bytes, OFF_EPOCH),
        payload_len: le_u32(bytes, OFF_PAYLOAD_LEN),
        crc: le_u32(bytes, OFF_CRC),
    })
}

/// Why a scan of the ring stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No record magic at the position (never written, or zeroed).
    NoMagic,
    /// A record of an older lap or an older history.
    StaleSequence { found: u64, expected: u64 },
    /// A record written before the epoch of the previous one, or before the
    /// replay point was set (a leftover of a run that crashed, behind a
    /// history rewritten after recovery).
    StaleEpoch { found: u64, previous: u64 },
    /// Unknown kind or flags.
    BadKind(u16),
    /// Length that does not fit in the ring at this position.
    BadLength(u32),
    /// Checksum mismatch: torn or corrupted record.
    BadChecksum { stored: u32, computed: u32 },
    /// The scan went all the way round the ring.
    RingFull,
    /// Reading the media failed.
    ReadError(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::NoMagic => f.write_str("no record magic (end of log)"),
            StopReason::StaleSequence { found, expected } => {
                write!(f, "record with sequence {found}, expected {expected} (end of log)")
            }
            StopReason::StaleEpoch { found, previous } => write!(
                f,
                "record of epoch {found} where epoch {previous} or later is required (leftover of a crashed run)"
            ),
            StopReason::BadKind(kind) => write!(f, "unknown record kind {kind}"),
            StopReason::BadLength(len) => write!(f, "payload length {len} does not fit the ring"),
            StopReason::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or corrupt record"
            ),
            StopReason::RingFull => f.write_str("the whole ring is in use"),
            StopReason::ReadError(err) => write!(f, "read error: {err}"),
        }
    }
}

/// One transaction found by a scan.
#[derive(Clone, Debug)]
pub struct ScannedRecord {
    pub seq: u64,
    pub ring_offset: u64,
    pub payload: Vec<u8>,
}

/// Result of following the log from the replay point.
#[derive(Clone, Debug)]
pub struct Scan {
    pub records: Vec<ScannedRecord>,
    /// Ring offset where the next record goes.
    pub head_offset: u64,
    /// Bytes of the ring in use from the replay point to the head (wrap
    /// waste included).
    pub used_bytes: u64,
    /// Sequence number the next record gets.
    pub next_seq: u64,
    /// Highest epoch seen (`min_epoch` if no record).
    pub max_epoch: u64,
    pub wrap_markers: u64,
    pub stop: StopReason,
}

/// Where the ring lives and which filesystem it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    pub base_bytes: u64,
    pub capacity_bytes: u64,
    pub uuid: [u8; 16],
}

impl Ring {
    /// Follow the chain from `start_offset`/`start_seq`, accepting only
    /// records of epoch ≥ `min_epoch`. Never fails: every problem ends the
    /// log and is reported in `stop`.
    pub fn scan(
        &self,
        media: &dyn Media,
        start_offset: u64,
        start_seq: u64,
        min_epoch: u64,
    ) -> Scan {
        let cap = self.capacity_bytes;
        let mut scan = Scan {
            records: Vec::new(),
            head_offset: start_offset,
            used_bytes: 0,
            next_seq: start_seq,
            max_epoch: min_epoch,
            wrap_markers: 0,
            stop: StopReason::NoMagic,
        };
        let mut pos = start_offset;
        // Every iteration consumes at least one alignment unit of the ring
        // or stops, so this loop is bounded by capacity / alignment.
        loop {
            if cap - pos < RECORD_HEADER_BYTES {
                scan.used_bytes += cap - pos;
                pos = 0;
            }
            scan.head_offset = pos;
            if scan.used_bytes + RECORD_ALIGN_BYTES > cap {
                scan.stop = StopReason::RingFull;
                return scan;
            }
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES as usize];
            if let Err(err) = media.read(self.base_bytes + pos, &mut header_bytes) {
                scan.stop = StopReason::ReadError(err.to_string());
                return scan;
            }
            let Some(header) = decode_header(&header_bytes) else {
                scan.stop = StopReason::NoMagic;
                return scan;
            };
            if header.seq != scan.next_seq {
                scan.stop = StopReason::StaleSequence {
                    found: header.seq,
                    expected: scan.next_seq,
                };
                return scan;
            }
            let flags = u16::from_le_bytes([header_bytes[OFF_FLAGS], header_bytes[OFF_FLAGS + 1]]);
            if flags != 0 || !(header.kind == KIND_TRANSACTION || header.kind == KIND_WRAP) {
                scan.stop = StopReason::BadKind(header.kind);
                return scan;
            }
            let payload_len = u64::from(header.payload_len);
            if payload_len > cap - pos - RECORD_HEADER_BYTES
                || (header.kind == KIND_WRAP && payload_len != 0)
            {
                scan.stop = StopReason::BadLength(header.payload_len);
                return scan;
            }
            let rec_bytes = record_bytes(payload_len);
            let consumed = if header.kind == KIND_WRAP {
                cap - pos
            } else {
                rec_bytes
            };
            if scan.used_bytes + consumed > cap {
                scan.stop = StopReason::RingFull;
                return scan;
            }
            // Bounded by the check above: payload_len < capacity.
            let mut payload = vec![0u8; payload_len as usize];
            if let Err(err) = media.read(self.base_bytes + pos + RECORD_HEADER_BYTES, &mut payload)
            {
                scan.stop = StopReason::ReadError(err.to_string());
                return scan;
            }
            let computed = record_crc(&self.uuid, &header_bytes, &payload);
            if computed != header.crc {
                scan.stop = StopReason::BadChecksum {
                    stored: header.crc,
                    computed,
                };
                return scan;
            }
            if header.epoch < scan.max_epoch {
                scan.stop = StopReason::StaleEpoch {
                    found: header.epoch,
                    previous: scan.max_epoch,
                };
                return scan;
            }
            scan.max_epoch = header.epoch;
            scan.used_bytes += consumed;
            if header.kind == KIND_WRAP {
                scan.wrap_markers += 1;
                pos = 0;
            } else {
                scan.records.push(ScannedRecord {
                    seq: header.seq,
                    ring_offset: pos,
                    payload,
                });
                scan.next_seq += 1;
                pos += rec_bytes;
            }
            if pos == cap {
                pos = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_are_aligned_and_include_the_header() {
        assert_eq!(record_bytes(0), 64);
        assert_eq!(record_bytes(32), 64);
        assert_eq!(record_bytes(33), 128);
        assert_eq!(
            encode_record(&[0; 16], KIND_TRANSACTION, 1, 1, &[1; 100]).len(),
            192
        );
    }

    #[test]
    fn header_round_trips_and_crc_covers_payload() {
        let uuid = [3; 16];
        let bytes = encode_record(&uuid, KIND_TRANSACTION, 42, 7, b"hello");
        let mut header = [0u8; 32];
        header.copy_from_slice(&bytes[..32]);
        let decoded = decode_header(&header).unwrap();
        assert_eq!(
            (
                decoded.kind,
                decoded.seq,
                decoded.epoch,
                decoded.payload_len
            ),
            (1, 42, 7, 5)
        );
        assert_eq!(record_crc(&uuid, &header, b"hello"), decoded.crc);
        assert_ne!(record_crc(&uuid, &header, b"hellp"), decoded.crc);
        assert_ne!(record_crc(&[4; 16], &header, b"hello"), decoded.crc);
    }
}
