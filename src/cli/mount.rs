//! `cowdax mount …` and the bare `cowdax SOURCE MOUNTPOINT -o …` form that
//! mount.fuse3 uses. (Placeholder on the skeleton branch; owned by the FUSE work.)

use std::ffi::OsString;

/// Runs the mount command with the arguments after the program name (and
/// after `mount` if it was given). Returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    let _ = args;
    eprintln!("cowdax: mounting is not built yet");
    1
}
