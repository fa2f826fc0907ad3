//! The process's limit of open files (`RLIMIT_NOFILE`), which bounds how many
//! connections the listeners can hold.

/// Raises the soft limit of open files to the hard limit, as servers do at start (the
/// soft limit is often 1,024, far below what a host serving many clients needs), and
/// returns the limit now in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = current()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The soft limit of open files now (1,024, the usual default, if it cannot be read).
pub fn soft_limit() -> u64 {
    current().map_or(1024, |limit| limit.rlim_cur)
}

fn current() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}
