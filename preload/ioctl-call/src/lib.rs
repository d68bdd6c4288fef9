//! The one raw `ioctl(2)` call the `cowdax` tools need.
//!
//! Why a crate of its own: the main crate forbids `unsafe` outside its
//! media layer, and an ioctl with a custom command number has no safe
//! wrapper in libc, nix or rustix (the argument's size and direction are
//! only known from the command). This crate makes that call safe for one
//! shape of command — a fixed-size argument block whose size the command
//! number encodes (`_IOC_SIZE`), as all of cowdax's private ioctls are —
//! by checking that the buffer is exactly that size before the call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use cowdax_ioctl_abi::{ioc_dir, ioc_size, IOC_NONE};

/// Issues `ioctl(fd, cmd, arg)` for a command whose argument is a plain
/// byte block of `_IOC_SIZE(cmd)` bytes, read and/or written by the kernel
/// in place. Returns ioctl(2)'s non-negative result.
///
/// Fails with `EINVAL` (without calling the kernel) when `arg` is not
/// exactly `_IOC_SIZE(cmd)` bytes or the command carries no direction
/// (`_IOC_NONE` commands take an integer, not a pointer).
pub fn ioctl_with_block(fd: BorrowedFd<'_>, cmd: u32, arg: &mut [u8]) -> io::Result<i32> {
    let size = ioc_size(cmd);
    if ioc_dir(cmd) == IOC_NONE || size == 0 || arg.len() != size {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `arg` is a live, exclusively borrowed buffer of exactly
    // `_IOC_SIZE(cmd)` bytes. For a command with a direction the kernel (and
    // for FUSE restricted ioctls, the FUSE module) copies at most
    // `_IOC_SIZE(cmd)` bytes from and to the pointer, so every access stays
    // inside `arg`; the buffer holds plain bytes, valid for any content.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as _, arg.as_mut_ptr()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn buffer_of_wrong_size_is_refused_before_the_call() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let cmd = cowdax_ioctl_abi::GET_TOKEN;
        let mut short = [0u8; cowdax_ioctl_abi::TokenArgs::SIZE - 1];
        let err = ioctl_with_block(file.as_fd(), cmd, &mut short).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        // _IO(0xCD, 1): no direction, not a block command.
        let io = cowdax_ioctl_abi::ioc(IOC_NONE, cowdax_ioctl_abi::IOCTL_TYPE, 1, 0);
        let err = ioctl_with_block(file.as_fd(), io, &mut []).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn a_right_sized_block_reaches_the_kernel() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let cmd = cowdax_ioctl_abi::GET_TOKEN;
        let mut block = [0u8; cowdax_ioctl_abi::TokenArgs::SIZE];
        // /dev/null knows no ioctls: the kernel answers ENOTTY.
        let err = ioctl_with_block(file.as_fd(), cmd, &mut block).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }
}
