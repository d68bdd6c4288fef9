//! statfs(2).

use crate::fs::locks::mlock;
use crate::fs::{Fs, Result, StatFs, NAME_MAX};

impl Fs {
    pub fn statfs(&self) -> Result<StatFs> {
        self.check_live()?;
        let space = mlock(&self.space);
        let inodes = self.table.len();
        let total_inodes = 1u64 << 32;
        Ok(StatFs {
            block_size: self.block_size(),
            total_blocks: space.pool_blocks(),
            free_blocks: space.available_blocks() + space.pending_blocks(),
            total_inodes,
            free_inodes: total_inodes.saturating_sub(inodes),
            name_max: NAME_MAX as u32,
        })
    }
}
