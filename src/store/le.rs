//! Little-endian field access in on-media byte buffers, shared by the
//! superblock, journal and checkpoint codecs. A leaf module: it imports
//! nothing from the store, so the codecs depend on it and never on each
//! other for it (the superblock refers to the journal's record alignment;
//! the journal no longer reaches back into the superblock).
//!
//! Callers pass offsets of fixed layout fields inside buffers they sized
//! themselves; an offset out of range is a bug and panics like slice
//! indexing does.

pub(crate) fn le_u32(bytes: &[u8], off: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn le_u64(bytes: &[u8], off: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[off..off + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn put_u32(bytes: &mut [u8], off: usize, value: u32) {
    bytes[off..off + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], off: usize, value: u64) {
    bytes[off..off + 8].copy_from_slice(&value.to_le_bytes());
}
