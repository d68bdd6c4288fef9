//! How stores reach the media: the flush method of a mapping, CPU cache-line
//! flushes, the store fence, and non-temporal copies for DAX mappings.
//!
//! On x86_64 the durability of a store to a DAX mapping is the CPU's business:
//! the cache line must be written back (CLWB, CLFLUSHOPT or CLFLUSH) and the
//! write-back must be ordered before later stores (SFENCE) so that, with ADR,
//! it sits in the memory controller's persistence domain. Page-cache mappings
//! use `msync` instead; that path lives in `mmap.rs` because it needs the
//! mapping.

use std::fmt;

use super::{MediaError, Result};

/// Environment variable that forces a flush method (tests, benchmarks):
/// `clwb`, `clflushopt`, `clflush` or `msync`. Unset or empty means automatic.
pub const FORCE_FLUSH_ENV: &str = "COWDAX_FORCE_FLUSH";

/// Copies of at least this many bytes into a mapping that is flushed with CPU
/// instructions use non-temporal stores.
///
/// Why 256: a non-temporal store writes a full line straight to the memory
/// controller, saving the read-for-ownership of the destination line and the
/// later write-back that CLWB would cause, but it costs a store fence and
/// ordinary stores for the unaligned head and tail. PMDK measured the break
/// even around a few lines and uses 256 bytes (`PMEM_MOVNT_THRESHOLD`); our
/// large copies are 4 KiB data blocks and journal records, far above it, and
/// our small ones (superblock fields, 8-byte stores) far below.
pub const NON_TEMPORAL_THRESHOLD_BYTES: usize = 256;

/// How `persist` and `fence` make stores durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMethod {
    /// CLWB per cache line (keeps the line cached), SFENCE in `fence`.
    Clwb,
    /// CLFLUSHOPT per cache line (evicts it), SFENCE in `fence`.
    Clflushopt,
    /// CLFLUSH per cache line (evicts it, ordered by itself), SFENCE in `fence`.
    Clflush,
    /// Remember dirty page ranges in `persist`, `msync(MS_SYNC)` them in `fence`.
    Msync,
}

impl FlushMethod {
    /// The lower-case name used by [`FORCE_FLUSH_ENV`] and in logs.
    pub fn name(self) -> &'static str {
        match self {
            FlushMethod::Clwb => "clwb",
            FlushMethod::Clflushopt => "clflushopt",
            FlushMethod::Clflush => "clflush",
            FlushMethod::Msync => "msync",
        }
    }

    /// Parses a name as accepted by [`FORCE_FLUSH_ENV`] (case-insensitive).
    pub fn parse(name: &str) -> Option<FlushMethod> {
        match name.trim().to_ascii_lowercase().as_str() {
            "clwb" => Some(FlushMethod::Clwb),
            "clflushopt" => Some(FlushMethod::Clflushopt),
            "clflush" => Some(FlushMethod::Clflush),
            "msync" => Some(FlushMethod::Msync),
            _ => None,
        }
    }

    /// True for the methods that flush cache lines with CPU instructions.
    pub fn is_cpu_flush(self) -> bool {
        !matches!(self, FlushMethod::Msync)
    }

    /// True when this CPU can execute the method.
    pub fn is_supported(self) -> bool {
        match self {
            FlushMethod::Msync => true,
            #[cfg(target_arch = "x86_64")]
            FlushMethod::Clwb => cpuid_leaf7_ebx() & CPUID7_EBX_CLWB != 0,
            #[cfg(target_arch = "x86_64")]
            FlushMethod::Clflushopt => cpuid_leaf7_ebx() & CPUID7_EBX_CLFLUSHOPT != 0,
            // CLFLUSH is part of SSE2, which every x86_64 CPU has.
            #[cfg(target_arch = "x86_64")]
            FlushMethod::Clflush => true,
            #[cfg(not(target_arch = "x86_64"))]
            FlushMethod::Clwb | FlushMethod::Clflushopt | FlushMethod::Clflush => false,
        }
    }

    /// The best CPU flush this machine has: CLWB, else CLFLUSHOPT, else
    /// CLFLUSH; `None` where there is no CPU flush support (non-x86_64).
    pub fn best_cpu_flush() -> Option<FlushMethod> {
        [
            FlushMethod::Clwb,
            FlushMethod::Clflushopt,
            FlushMethod::Clflush,
        ]
        .into_iter()
        .find(|method| method.is_supported())
    }

    /// The method forced by [`FORCE_FLUSH_ENV`], if it is set. An unknown
    /// name or one this CPU cannot execute is an error, not silently ignored:
    /// a benchmark must measure what it claims to measure.
    pub fn forced_by_env() -> Result<Option<FlushMethod>> {
        match std::env::var(FORCE_FLUSH_ENV) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => FlushMethod::from_forced_name(&value).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(MediaError::Config(format!(
                "{FORCE_FLUSH_ENV} is not valid UTF-8"
            ))),
        }
    }

    /// Validates a forced method name (the value of [`FORCE_FLUSH_ENV`]).
    pub fn from_forced_name(value: &str) -> Result<FlushMethod> {
        let method = FlushMethod::parse(value).ok_or_else(|| {
            MediaError::Config(format!(
                "{FORCE_FLUSH_ENV}={value:?}: expected clwb, clflushopt, clflush or msync"
            ))
        })?;
        if !method.is_supported() {
            return Err(MediaError::Config(format!(
                "{FORCE_FLUSH_ENV}={value}: this CPU does not support {}",
                method.name()
            )));
        }
        Ok(method)
    }
}

/// CPUID.(EAX=7,ECX=0):EBX bit for CLFLUSHOPT (Intel SDM vol. 2A, CPUID).
#[cfg(target_arch = "x86_64")]
const CPUID7_EBX_CLFLUSHOPT: u32 = 1 << 23;
/// CPUID.(EAX=7,ECX=0):EBX bit for CLWB.
#[cfg(target_arch = "x86_64")]
const CPUID7_EBX_CLWB: u32 = 1 << 24;

/// EBX of CPUID leaf 7 subleaf 0 (structured extended features), or 0 when
/// the CPU has no leaf 7. `is_x86_feature_detected!` does not know CLWB and
/// CLFLUSHOPT (they are not Rust target features), so we ask CPUID directly.
#[cfg(target_arch = "x86_64")]
fn cpuid_leaf7_ebx() -> u32 {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86_64 CPU and only reads registers.
    // (Safe to call since Rust 1.87; the block keeps rust-version 1.85.)
    #[allow(unused_unsafe)]
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return 0;
    }
    // SAFETY: as above; leaf 7 exists (max_leaf >= 7).
    #[allow(unused_unsafe)]
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    leaf7.ebx
}

impl fmt::Display for FlushMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes back every cache line overlapping `start..start+len` with the CPU
/// instruction of `method`. Returns the number of lines flushed.
///
/// # Safety
/// `method` must be a CPU flush supported by this CPU
/// ([`FlushMethod::is_supported`]), and every cache line overlapping the range
/// must lie inside one live mapping (a page-aligned mapping contains every
/// line that overlaps a range inside it, because lines never cross pages).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn flush_lines(method: FlushMethod, start: *const u8, len: usize) -> u64 {
    use super::CACHE_LINE_BYTES;
    if len == 0 {
        return 0;
    }
    let line_bytes = CACHE_LINE_BYTES as usize;
    let first_line = start as usize & !(line_bytes - 1);
    let end = start as usize + len;
    let line_count = (end - first_line).div_ceil(line_bytes);
    // The method is matched once, outside the per-line loops.
    match method {
        FlushMethod::Clwb => {
            for index in 0..line_count {
                let line = (first_line + index * line_bytes) as *const u8;
                // SAFETY: the caller guarantees the CPU has CLWB and that the
                // line is inside a live mapping. No `nomem` option: the
                // compiler must treat the asm as reading memory, so earlier
                // stores to the line are not moved past it.
                unsafe {
                    core::arch::asm!("clwb [{line}]", line = in(reg) line,
                        options(nostack, preserves_flags));
                }
            }
        }
        FlushMethod::Clflushopt => {
            for index in 0..line_count {
                let line = (first_line + index * line_bytes) as *const u8;
                // SAFETY: as for CLWB above, with CLFLUSHOPT support
                // guaranteed by the caller.
                unsafe {
                    core::arch::asm!("clflushopt [{line}]", line = in(reg) line,
                        options(nostack, preserves_flags));
                }
            }
        }
        FlushMethod::Clflush => {
            for index in 0..line_count {
                let line = (first_line + index * line_bytes) as *const u8;
                // SAFETY: CLFLUSH is baseline on x86_64 (SSE2); the line is
                // inside a live mapping (caller's guarantee).
                unsafe { core::arch::x86_64::_mm_clflush(line) };
            }
        }
        // Not a CPU flush: nothing to do here (the caller msyncs instead).
        FlushMethod::Msync => return 0,
    }
    line_count as u64
}

/// Orders every earlier store, non-temporal store and CLWB/CLFLUSHOPT of this
/// thread before every later store: after it, flushed lines are in the
/// persistence domain (ADR) and non-temporal stores are globally visible.
#[cfg(target_arch = "x86_64")]
pub(super) fn store_fence() {
    // SAFETY: SSE is baseline on x86_64, so `sfence` is always available;
    // it reads and writes no memory.
    unsafe { core::arch::x86_64::_mm_sfence() };
}

/// Copies `len` bytes from `src` to `dst` with non-temporal stores for the
/// 16-byte aligned middle part and ordinary stores for the unaligned head and
/// tail, then fences so the copy is visible to every thread at return (the
/// media contract: a write is seen by every later read). The head and tail
/// stay in the cache and are written back by the caller's `persist`.
///
/// # Safety
/// `src..src+len` must be valid for reads, `dst..dst+len` valid for writes,
/// and the two ranges must not overlap.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn copy_nontemporal(dst: *mut u8, src: *const u8, len: usize) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    let head = ((16 - (dst as usize & 15)) & 15).min(len);
    // SAFETY: head <= len, both ranges valid and disjoint (caller).
    unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
    let mut done = head;
    while len - done >= 16 {
        // SAFETY: done + 16 <= len keeps both accesses in range; dst + done
        // is 16-byte aligned after the head, as `_mm_stream_si128` requires;
        // the load is unaligned-tolerant.
        unsafe {
            let chunk = _mm_loadu_si128(src.add(done) as *const __m128i);
            _mm_stream_si128(dst.add(done) as *mut __m128i, chunk);
        }
        done += 16;
    }
    // SAFETY: done <= len; the tail lies inside both ranges.
    unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done) };
    store_fence();
}

/// Stores `len` zero bytes at `dst` like [`copy_nontemporal`] does for copies.
///
/// # Safety
/// `dst..dst+len` must be valid for writes.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn zero_nontemporal(dst: *mut u8, len: usize) {
    use core::arch::x86_64::{__m128i, _mm_setzero_si128, _mm_stream_si128};
    let head = ((16 - (dst as usize & 15)) & 15).min(len);
    // SAFETY: head <= len, the range is valid for writes (caller).
    unsafe { std::ptr::write_bytes(dst, 0, head) };
    // SAFETY: SSE2 is baseline on x86_64; this only sets a register.
    let zero = unsafe { _mm_setzero_si128() };
    let mut done = head;
    while len - done >= 16 {
        // SAFETY: done + 16 <= len; dst + done is 16-byte aligned.
        unsafe { _mm_stream_si128(dst.add(done) as *mut __m128i, zero) };
        done += 16;
    }
    // SAFETY: the tail lies inside the range.
    unsafe { std::ptr::write_bytes(dst.add(done), 0, len - done) };
    store_fence();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_method_names_round_trip_and_unknown_names_are_rejected() {
        for method in [
            FlushMethod::Clwb,
            FlushMethod::Clflushopt,
            FlushMethod::Clflush,
            FlushMethod::Msync,
        ] {
            assert_eq!(FlushMethod::parse(method.name()), Some(method));
        }
        assert_eq!(FlushMethod::parse(" CLWB\n"), Some(FlushMethod::Clwb));
        assert_eq!(FlushMethod::parse("clwbx"), None);
        assert!(matches!(
            FlushMethod::from_forced_name("fsync"),
            Err(MediaError::Config(_))
        ));
        assert_eq!(
            FlushMethod::from_forced_name("msync").ok(),
            Some(FlushMethod::Msync)
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn best_cpu_flush_prefers_clwb_then_clflushopt_then_clflush() {
        let best = FlushMethod::best_cpu_flush();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let has = |flag: &str| cpuinfo.split_whitespace().any(|word| word == flag);
        let expected = if has("clwb") {
            FlushMethod::Clwb
        } else if has("clflushopt") {
            FlushMethod::Clflushopt
        } else {
            FlushMethod::Clflush
        };
        assert_eq!(best, Some(expected));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn flush_lines_counts_every_line_the_range_touches() {
        let buf = vec![7u8; 4096];
        let base = buf.as_ptr();
        let line_base = (base as usize).next_multiple_of(64) - base as usize;
        for method in [
            FlushMethod::Clwb,
            FlushMethod::Clflushopt,
            FlushMethod::Clflush,
        ] {
            if !method.is_supported() {
                continue;
            }
            // SAFETY: every line touched lies in `buf` (ranges start at or
            // after the first full line and end before the last).
            let counts = unsafe {
                [
                    flush_lines(method, base.add(line_base), 64),
                    flush_lines(method, base.add(line_base + 63), 2),
                    flush_lines(method, base.add(line_base + 1), 128),
                    flush_lines(method, base.add(line_base), 0),
                ]
            };
            assert_eq!(counts, [1, 2, 3, 0], "{method}");
        }
        assert_eq!(buf[100], 7, "flushing must not change memory contents");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn non_temporal_copy_and_zero_match_ordinary_ones_at_every_alignment() {
        let src: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
        for dst_offset in 0..17 {
            for len in [0, 1, 15, 16, 17, 255, 256, 300, 1000] {
                let mut dst = vec![0xAAu8; 1100];
                // SAFETY: dst_offset + len <= 1017 < dst.len(); src holds
                // 1024 >= len + 3 bytes; distinct vectors do not overlap.
                unsafe {
                    copy_nontemporal(dst.as_mut_ptr().add(dst_offset), src.as_ptr().add(3), len)
                };
                assert!(dst[..dst_offset].iter().all(|&b| b == 0xAA));
                assert_eq!(&dst[dst_offset..dst_offset + len], &src[3..3 + len]);
                assert!(dst[dst_offset + len..].iter().all(|&b| b == 0xAA));

                // SAFETY: same range as above, inside `dst`.
                unsafe { zero_nontemporal(dst.as_mut_ptr().add(dst_offset), len) };
                assert!(dst[dst_offset..dst_offset + len].iter().all(|&b| b == 0));
                assert!(dst[dst_offset + len..].iter().all(|&b| b == 0xAA));
            }
        }
    }
}
