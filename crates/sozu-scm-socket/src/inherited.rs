//! Descriptors a process inherited by number across an exec: adopting them, keeping a
//! copy to put back before another exec, and closing the ones nobody named.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

fn not_std(raw: RawFd) -> std::io::Result<()> {
    if raw < 3 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("fd {raw} is a standard stream")));
    }
    Ok(())
}

/// Borrows `raw` if it is open.
fn borrow_open(raw: RawFd) -> std::io::Result<BorrowedFd<'static>> {
    use nix::fcntl::{FcntlArg, fcntl};
    // SAFETY: F_GETFD on any integer is harmless; it fails with EBADF if not open. The
    // borrow is only used for fcntl/dup calls, never to close.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl(borrowed, FcntlArg::F_GETFD)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, format!("fd {raw}: {e}")))?;
    Ok(borrowed)
}

/// Takes ownership of a descriptor this process inherited by number (from a parent
/// that passed `--fd N` on the command line). Checks that `raw` is open first, and
/// sets `FD_CLOEXEC` on it so it does not leak into our own children.
///
/// The caller must not adopt the same number twice; nothing else in the process may
/// own it.
pub fn adopt_inherited_fd(raw: RawFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    not_std(raw)?;
    let borrowed = borrow_open(raw)?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: the fd is open (checked above) and, by this function's contract, owned
    // by no one else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A copy of an inherited descriptor, taken before anything adopts (and may close) the
/// original, to put it back at the same number before handing everything to another
/// image: a re-executed process that fails hands the fds back to the one it replaced.
#[derive(Debug)]
pub struct SavedFd {
    number: RawFd,
    copy: OwnedFd,
}

impl SavedFd {
    /// Copies the open descriptor `raw` (the copy has `FD_CLOEXEC`).
    pub fn save(raw: RawFd) -> std::io::Result<Self> {
        not_std(raw)?;
        Ok(SavedFd { number: raw, copy: borrow_open(raw)?.try_clone_to_owned()? })
    }

    /// The number this descriptor was inherited at.
    pub fn number(&self) -> RawFd {
        self.number
    }

    /// The copy's own number (to keep it open in [`close_inherited_except`]).
    pub fn copy_number(&self) -> RawFd {
        self.copy.as_raw_fd()
    }

    /// The copy.
    pub fn copy(&self) -> BorrowedFd<'_> {
        self.copy.as_fd()
    }

    /// Puts the descriptor back at its number, without `FD_CLOEXEC`, for an exec that
    /// follows at once. Whatever the process had at that number is replaced: call it
    /// only when nothing will use the process's own handles again.
    pub fn restore(&self) -> std::io::Result<()> {
        // SAFETY: the caller is about to exec; the descriptor at `number` is meant for
        // the next image, so the returned handle is released, never closed here.
        let restored = unsafe { nix::unistd::dup2_raw(&self.copy, self.number) }?;
        let _ = restored.into_raw_fd();
        Ok(())
    }
}

/// Closes every descriptor above the standard streams that is not in `keep`: what an
/// exec'd image inherited but was not told about. Call it before opening anything
/// else; returns how many were closed.
pub fn close_inherited_except(keep: &[RawFd]) -> std::io::Result<usize> {
    let open: Vec<RawFd> =
        std::fs::read_dir("/proc/self/fd")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // the directory's own fd was in the listing and is closed now: adopting it fails
    let mut closed = 0;
    for raw in open {
        if raw >= 3 && !keep.contains(&raw) && adopt_inherited_fd(raw).is_ok() {
            closed += 1;
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(raw: RawFd) -> bool {
        borrow_open(raw).is_ok()
    }

    #[test]
    fn saved_fd_comes_back_at_its_number() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let number = a.as_raw_fd();
        let saved = SavedFd::save(number).unwrap();
        assert_eq!(saved.number(), number);
        assert_ne!(saved.copy_number(), number);
        drop(a);
        assert!(!is_open(number));
        saved.restore().unwrap();
        assert!(is_open(number));
        // the restored fd is the same socket: what it gets, `b` reads
        let restored = adopt_inherited_fd(number).unwrap();
        nix::unistd::write(&restored, b"back").unwrap();
        let mut buf = [0u8; 4];
        nix::unistd::read(&b, &mut buf).unwrap();
        assert_eq!(&buf, b"back");
        assert!(SavedFd::save(1).is_err() && SavedFd::save(100_000).is_err());
    }

    #[test]
    fn standard_streams_and_closed_fds_are_refused() {
        assert!(adopt_inherited_fd(2).is_err());
        assert_eq!(adopt_inherited_fd(100_000).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }
}
