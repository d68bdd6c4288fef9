//! `cowdax --version`: the program's version and the on-media format
//! versions it reads and writes, so that an administrator can tell whether
//! a filesystem made by one cowdax can be used by another.

use std::sync::LazyLock;

use crate::fs::{CHECKPOINT_VERSION, TXN_VERSION};
use crate::store::superblock::FORMAT_VERSION;

/// What `--version` prints after the program name.
pub static VERSION_LINE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (on-media format: superblock {FORMAT_VERSION}, journal records {TXN_VERSION}, \
         checkpoint {CHECKPOINT_VERSION}; reads and writes these)",
        env!("CARGO_PKG_VERSION")
    )
});
