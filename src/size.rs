//! Sizes given by users and their human-readable form: the one grammar of
//! every size argument (`mkfs --size 1G`, `--journal-size 16MiB`, `dedupe
//! --min-size 64K`, `clone --len 1M`, `fsmap --range 1G:64M`) and of the
//! size mount options (`-o max_write=1MiB,max_readahead=512K`).
//!
//! Units are binary, as in mkfs.ext4 and mkfs.xfs: `K`, `M`, `G`, `T` mean
//! KiB, MiB, GiB, TiB whether written `G`, `GB` or `GiB` (any case), with
//! or without a space before them. A bare number is bytes; `B` alone is
//! accepted too.

use std::fmt;

use indicatif::BinaryBytes;

/// Why a size argument was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    Empty,
    NotANumber(String),
    UnknownUnit(String),
    Overflow(String),
    Zero,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => write!(f, "empty size"),
            SizeError::NotANumber(s) => write!(
                f,
                "'{s}' is not a size: expected a whole number with an optional unit, e.g. 4096, 512K, 64MiB, 1G"
            ),
            SizeError::UnknownUnit(u) => write!(
                f,
                "unknown unit '{u}': use K, M, G or T (optionally followed by B or iB)"
            ),
            SizeError::Overflow(s) => write!(f, "size '{s}' does not fit in 64 bits"),
            SizeError::Zero => write!(f, "size must be greater than zero"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses `4096`, `512K`, `64MiB`, `1G`, `2gb`, `1T` into bytes (binary
/// units); zero is refused. For sizes of things that must exist (an image,
/// a journal).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    match parse_bytes(text)? {
        0 => Err(SizeError::Zero),
        bytes => Ok(bytes),
    }
}

/// [`parse_size`]'s grammar, zero allowed: for offsets, lengths and limits
/// where 0 has a meaning (`--len 0`: to EOF, `max_readahead=0`).
pub fn parse_bytes(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::NotANumber(trimmed.to_string()));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(trimmed.to_string()))?;
    let shift = unit_shift(unit.trim_start())?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(trimmed.to_string()))
}

/// Power of two of a unit suffix (`""`/`B` → 0, `K`/`KB`/`KiB` → 10, …).
fn unit_shift(unit: &str) -> Result<u32, SizeError> {
    let lower = unit.to_ascii_lowercase();
    let prefix = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    match prefix {
        "" if !lower.ends_with("ib") => Ok(0),
        "k" => Ok(10),
        "m" => Ok(20),
        "g" => Ok(30),
        "t" => Ok(40),
        _ => Err(SizeError::UnknownUnit(unit.to_string())),
    }
}

/// clap value parser for size arguments ([`parse_size`]: not zero).
pub fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

/// clap value parser for byte offsets and lengths ([`parse_bytes`]: zero
/// allowed).
pub fn parse_bytes_arg(text: &str) -> Result<u64, String> {
    parse_bytes(text).map_err(|e| e.to_string())
}

/// `1073741824` → `"1.00 GiB"`; below 1 KiB, plain bytes (`"512 B"`).
/// (indicatif's `BinaryBytes`, the format of the progress bars too.)
pub fn human_size(bytes: u64) -> String {
    BinaryBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1"), Ok(1));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size(" 42 "), Ok(42));
    }

    #[test]
    fn suffixes_are_binary_in_every_spelling() {
        for (text, bytes) in [
            ("1K", 1u64 << 10),
            ("1k", 1 << 10),
            ("1KB", 1 << 10),
            ("1KiB", 1 << 10),
            ("1kib", 1 << 10),
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("64MB", 64 << 20),
            ("2G", 2 << 30),
            ("2GiB", 2 << 30),
            ("2gb", 2 << 30),
            ("3T", 3 << 40),
            ("3TiB", 3 << 40),
            ("16 M", 16 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn garbage_and_unknown_units_are_rejected() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(parse_size("G"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("-1"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("1.5G"), Err(SizeError::UnknownUnit(_))));
        assert!(matches!(parse_size("1P"), Err(SizeError::UnknownUnit(_))));
        assert!(matches!(parse_size("1iB"), Err(SizeError::UnknownUnit(_))));
        assert!(matches!(
            parse_size("1GiBs"),
            Err(SizeError::UnknownUnit(_))
        ));
        assert!(matches!(
            parse_size("1 G B"),
            Err(SizeError::UnknownUnit(_))
        ));
    }

    #[test]
    fn zero_is_rejected_as_a_size_but_not_as_a_byte_count() {
        assert_eq!(parse_size("0"), Err(SizeError::Zero));
        assert_eq!(parse_size("0G"), Err(SizeError::Zero));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("0K"), Ok(0));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("16777216T"),
            Err(SizeError::Overflow(_))
        ));
        assert_eq!(parse_size("16777215T"), Ok(16777215u64 << 40));
    }

    #[test]
    fn human_size_picks_the_largest_whole_unit() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.00 KiB");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(64 << 20), "64.00 MiB");
        assert_eq!(human_size(1 << 30), "1.00 GiB");
        assert_eq!(human_size(5 << 40), "5.00 TiB");
        assert_eq!(human_size(3 << 50), "3.00 PiB");
    }
}
