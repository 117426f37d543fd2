//! The data directory is the owner's only (issue 11: journal segments and
//! sled files were created 0644): a process umask of 0o077, and the
//! directory made 0700 at start-up, tightening what an older version left.

/// Sets the process umask to 0o077: journal segments, index files, the
/// audit log and keys are created 0600 and directories 0700 (issue 11:
/// they were world-readable). Process-wide, so it also covers files that
/// libraries (sled) create.
pub fn owner_only_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the data directory owner-only and makes an existing one (and
/// anything under it an older version left readable) owner-only too, so
/// the data is private whatever the umask of the shell that started us.
///
/// # Errors
/// The directory cannot be created, or its mode cannot be set.
pub fn private_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    owner_only_umask();
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The directory itself through any symlink to it (`/var/lib/recordhub` → a volume).
        let mode = std::fs::metadata(dir)?.permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700))?;
        for entry in std::fs::read_dir(dir)? {
            // A file that vanished meanwhile, or one we do not own, is not worth refusing to start.
            let _ = restrict(&entry?.path());
        }
    }
    Ok(())
}

/// Clears group and other bits of `path` and under it (symlinks are not followed).
#[cfg(unix)]
fn restrict(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let _ = restrict(&entry?.path());
        }
    }
    Ok(())
}
