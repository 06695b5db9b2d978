//! fc-init's private runtime directory (docs/reference.md §8): where its sockets and the default
//! event store live, mode 0700 so no other user can reach the admin socket or the function.
//!
//! The directory may already exist, made by an earlier run — or by someone else: a default
//! under a shared temp dir (`/tmp/fc-init-<uid>`) can be created first by another user. So an
//! existing directory is checked without following a symlink: it must be a directory owned by
//! fc-init's uid; a looser mode is tightened to 0700 (with a warning); anything else is refused
//! with the reason. Directories above it, and the parent of a socket path the user configured,
//! are only created when missing and never changed.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    /// Creating or inspecting it failed.
    #[error("runtime directory {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// It exists but is not a directory (a symlink is refused too: it could point anywhere).
    #[error("runtime directory {} exists and is not a directory (or is a symlink)", .0.display())]
    NotADirectory(PathBuf),
    /// It belongs to another user, who could read or replace what fc-init puts there.
    #[error(
        "runtime directory {} belongs to uid {owner}, not to fc-init's uid {}; \
         remove it or set the paths in [admin], [function] and [async]",
        path.display(),
        nix::unistd::geteuid()
    )]
    NotOurs { path: PathBuf, owner: u32 },
}

/// Makes `path` fc-init's private directory: created with mode 0700 when missing; when it
/// exists, it must be our own directory, and its mode is made 0700.
pub fn ensure_private(path: &Path) -> Result<(), RuntimeDirError> {
    let io_err = |source| RuntimeDirError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A missing parent ($XDG_RUNTIME_DIR/..., a configured volume): made as usual.
            create_missing(path)?;
            return ensure_private(path);
        }
        Err(e) => return Err(io_err(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    if !meta.file_type().is_dir() {
        return Err(RuntimeDirError::NotADirectory(path.to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(RuntimeDirError::NotOurs {
            path: path.to_owned(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        log::warn!(
            "runtime directory {} had mode {mode:04o}; making it 0700",
            path.display()
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

/// Creates `path` and its missing parents with mode 0700; an existing directory is left as
/// it is (it may be `/tmp` or a volume the user chose).
pub fn create_missing(path: &Path) -> Result<(), RuntimeDirError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| RuntimeDirError::Io {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        crate::test_support::scratch_path(&format!("rtdir-{tag}"))
    }

    /// A fresh scratch directory with mode `mode`.
    fn dir_with_mode(tag: &str, mode: u32) -> PathBuf {
        let dir = scratch(tag);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_is_made_0700_with_its_parents() {
        let base = scratch("new");
        let dir = base.join("a/fc-init");
        ensure_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_runtime_directory_left_with_loose_modes_is_made_private() {
        let dir = dir_with_mode("loose", 0o777);
        ensure_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_or_a_file_is_refused() {
        let base = scratch("link");
        std::fs::create_dir(&base).unwrap();
        let link = base.join("fc-init");
        std::os::unix::fs::symlink("/tmp", &link).unwrap();
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        for path in [&link, &file] {
            let refused = ensure_private(path);
            assert!(
                matches!(refused, Err(RuntimeDirError::NotADirectory(_))),
                "{path:?}: {refused:?}"
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_existing_parent_of_a_configured_path_is_left_alone() {
        let dir = dir_with_mode("shared", 0o755);
        create_missing(&dir).unwrap();
        assert_eq!(mode(&dir), 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
