//! Starting programs (the function and command hooks) in a clean state.
//!
//! A supervised program must always be stoppable, whatever fc-init inherited: the child starts
//! with an empty signal mask and every disposition at its default (tini's `restore_signals`), in
//! a process group of its own, with fc-init's stdin, stdout and stderr. The `pre_exec` closure
//! runs between `fork` and `exec` in a copy of a multi-threaded process, so it only makes
//! async-signal-safe system calls: no allocation, no locks, no logging. Everything that needs
//! the C library's databases (user and group look-ups) is resolved before the fork.
//!
//! Only the supervisor thread calls `spawn`, and it never waits on the returned pid here: the
//! reaper owns `waitpid` (a `Child::wait` elsewhere would race it and get ECHILD).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Pid, Uid};

use super::FunctionEnv;
use crate::config::UserSpec;

/// Why a program could not be started; maps to tini's 126/127 convention.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No such program (exit 127).
    #[error("cannot run {program:?}: command not found")]
    NotFound { program: String, source: io::Error },
    /// Found but not executable: EACCES, ENOEXEC (exit 126).
    #[error("cannot run {program:?}: not executable")]
    NotExecutable { program: String, source: io::Error },
    /// Starting it failed otherwise: fork, a credential change, resources (exit 1).
    #[error("cannot start {program:?}")]
    Failed { program: String, source: io::Error },
    /// `function.user` names nobody.
    #[error("function.user: no such user {0:?}")]
    UnknownUser(String),
    /// `function.user` names no group.
    #[error("function.user: no such group {0:?}")]
    UnknownGroup(String),
    /// `function.working_dir` is not a directory fc-init can see.
    #[error("function.working_dir {}", path.display())]
    WorkingDir { path: PathBuf, source: io::Error },
    /// Reading /etc/passwd or /etc/group failed.
    #[error("reading {what}")]
    Lookup { what: String, source: io::Error },
}

impl SpawnError {
    /// The exit status fc-init ends with when the function cannot be started.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => crate::exit::NOT_FOUND,
            SpawnError::NotExecutable { .. } => crate::exit::NOT_EXECUTABLE,
            _ => crate::exit::FAILURE,
        }
    }
}

/// A user to become before exec, resolved in the parent (the C library's look-ups are not
/// async-signal-safe, so they cannot run in the forked child).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups, as `initgroups(3)` would set them.
    pub groups: Vec<Gid>,
    /// Home directory, exported as HOME when the user is switched.
    pub home: Option<PathBuf>,
    pub name: Option<String>,
}

impl Credentials {
    /// Resolves `function.user`: a name or uid, optionally `:group` (a name or gid).
    ///
    /// Names are looked up in /etc/passwd and /etc/group of the container, as runc and Docker
    /// do, rather than through the C library's NSS (which a static binary cannot load). A numeric
    /// uid without an entry is allowed and gets gid 0, as with Docker's `USER 1000`.
    pub fn resolve(spec: &UserSpec) -> Result<Credentials, SpawnError> {
        let read = |path: &str| {
            std::fs::read_to_string(path).or_else(|e| match e.kind() {
                // A minimal image may have no such file: numeric ids still work.
                io::ErrorKind::NotFound => Ok(String::new()),
                _ => Err(SpawnError::Lookup {
                    what: path.to_owned(),
                    source: e,
                }),
            })
        };
        let passwd = read("/etc/passwd")?;
        let group = read("/etc/group")?;
        Credentials::resolve_in(spec, &passwd, &group)
    }

    fn resolve_in(spec: &UserSpec, passwd: &str, group: &str) -> Result<Credentials, SpawnError> {
        let numeric = spec.user.parse::<u32>().ok();
        let entry = passwd_entries(passwd).find(|e| match numeric {
            Some(uid) => e.uid == uid,
            None => e.name == spec.user,
        });
        let (uid, name, primary, home) = match (entry, numeric) {
            (Some(e), _) => (
                e.uid,
                Some(e.name.to_owned()),
                e.gid,
                Some(PathBuf::from(e.home)),
            ),
            (None, Some(uid)) => (uid, None, 0, None),
            (None, None) => return Err(SpawnError::UnknownUser(spec.user.clone())),
        };
        let gid = match &spec.group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| SpawnError::UnknownGroup(g.clone()))?,
            },
        };
        // initgroups(3): the primary group plus every group that lists the user as a member.
        let mut groups = vec![Gid::from_raw(gid)];
        if let Some(name) = &name {
            for e in group_entries(group) {
                if e.members.split(',').any(|m| m == name)
                    && !groups.contains(&Gid::from_raw(e.gid))
                {
                    groups.push(Gid::from_raw(e.gid));
                }
            }
        }
        Ok(Credentials {
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            groups,
            home,
            name,
        })
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// The colon-separated fields of each line of an account database (passwd(5), group(5))
/// that has at least `fields` of them; comment lines (`#`) and shorter lines are skipped.
fn records(text: &str, fields: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= fields)
}

/// `name:password:uid:gid:gecos:home:shell` lines (passwd(5)); malformed lines are skipped.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(text, 7).filter_map(|f| {
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

/// `name:password:gid:member,member` lines (group(5)); malformed lines are skipped.
fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    records(text, 4).filter_map(|f| {
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3],
        })
    })
}

/// What to start.
pub struct Spec<'a> {
    /// Program and arguments as given: they need not be UTF-8.
    pub argv: &'a [OsString],
    pub working_dir: Option<&'a Path>,
    /// Added to (and overriding) the inherited environment, and taken out of it.
    pub env: &'a FunctionEnv,
    pub credentials: Option<&'a Credentials>,
    /// Hand the terminal's foreground to the new process group when stdin is a terminal, so an
    /// interactive function can read it (tini does the same). Only for the function itself.
    pub foreground: bool,
}

/// Starts `spec` in a new process group whose id is its pid. Never waits.
pub fn spawn(spec: &Spec<'_>) -> Result<Pid, SpawnError> {
    let program = spec
        .argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(spec.argv.first().map_or(OsStr::new(""), |p| p.as_os_str()));
    cmd.args(&spec.argv[1..]);
    for name in &spec.env.remove {
        cmd.env_remove(name);
    }
    cmd.envs(&spec.env.set);
    if let Some(dir) = spec.working_dir {
        // Checked here because a failed chdir in the child comes back as the same ENOENT as a
        // missing program, which would read "command not found".
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let source = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
                return Err(SpawnError::WorkingDir {
                    path: dir.to_owned(),
                    source,
                });
            }
            Err(source) => {
                return Err(SpawnError::WorkingDir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
        cmd.current_dir(dir);
    }
    if let Some(creds) = spec.credentials {
        if let Some(home) = &creds.home {
            if !spec.env.set.contains_key("HOME") {
                cmd.env("HOME", home);
            }
        }
        if let Some(name) = &creds.name {
            if !spec.env.set.contains_key("USER") {
                cmd.env("USER", name);
            }
        }
    }
    cmd.process_group(0);
    let creds = spec.credentials.map(|c| (c.uid, c.gid, c.groups.clone()));
    let foreground = spec.foreground;
    // SAFETY: the closure only calls async-signal-safe functions (sigprocmask, sigaction,
    // isatty, tcsetpgrp, setgroups, setgid, setuid) and does not allocate: the group list was
    // built before the fork and is only borrowed.
    unsafe {
        cmd.pre_exec(move || {
            reset_signals();
            if foreground {
                take_terminal();
            }
            if let Some((uid, gid, groups)) = &creds {
                // Order matters: supplementary groups and gid while still privileged, uid last.
                if libc::setgroups(groups.len(), groups.as_ptr() as *const libc::gid_t) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(gid.as_raw()) != 0 || libc::setuid(uid.as_raw()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        // The `Child` handle is dropped without waiting: dropping neither waits nor kills, and the
        // reaper collects the exit status.
        Ok(child) => Ok(Pid::from_raw(child.id() as i32)),
        // As tini and the shells: 127 when there is no such program, 126 when it is there but
        // cannot be executed, and any other failure is fc-init's own (1, with its cause).
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOENT) => SpawnError::NotFound { program, source: e },
            Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::ELOOP) => {
                SpawnError::NotExecutable { program, source: e }
            }
            _ => SpawnError::Failed { program, source: e },
        }),
    }
}

/// Empty signal mask and default dispositions for every signal, whatever fc-init inherited or set.
///
/// Runs in the forked child: async-signal-safe calls only. The dispositions are reset with the
/// raw `rt_sigaction` system call because the C library's `sigaction` refuses to touch the
/// real-time signals it reserves for itself (32 and 33 in glibc), and a parent may still have
/// left those ignored.
fn reset_signals() {
    /// The kernel's `struct sigaction` (asm-generic/signal.h); SIG_DFL needs no restorer.
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::c_ulong,
        flags: libc::c_ulong,
        restorer: libc::c_ulong,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL as libc::c_ulong,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: sigprocmask on a local set and rt_sigaction with a valid struct and the kernel's
    // sigset size (8 bytes); both are plain system calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..=64 {
            // EINVAL for SIGKILL and SIGSTOP: those cannot be changed and are at their defaults.
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
}

/// Makes the child's process group the terminal's foreground group when stdin is a terminal.
///
/// Runs in the forked child. SIGTTOU is ignored around `tcsetpgrp` because a background group
/// changing the foreground would otherwise be stopped by it (tcsetpgrp(3)); the disposition is
/// reset right after.
fn take_terminal() {
    // SAFETY: isatty, sigaction and tcsetpgrp are async-signal-safe; errors (ENOTTY, no
    // controlling terminal) are ignored on purpose: there is simply no terminal to hand over.
    unsafe {
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nweb:x:1000:1001:Web:/home/web:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\nweb:x:1001:\nadm:x:4:web,other\nstaff:x:50:other\n";

    fn resolve(user: &str, group: Option<&str>) -> Result<Credentials, SpawnError> {
        let spec = UserSpec {
            user: user.into(),
            group: group.map(String::from),
        };
        Credentials::resolve_in(&spec, PASSWD, GROUP)
    }

    #[test]
    fn a_name_gets_its_primary_and_supplementary_groups() {
        let c = resolve("web", None).unwrap();
        assert_eq!((c.uid.as_raw(), c.gid.as_raw()), (1000, 1001));
        assert_eq!(c.groups, [Gid::from_raw(1001), Gid::from_raw(4)]);
        assert_eq!(c.home, Some(PathBuf::from("/home/web")));
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let c = resolve("1234", None).unwrap();
        assert_eq!((c.uid.as_raw(), c.gid.as_raw()), (1234, 0));
        let c = resolve("1000", Some("staff")).unwrap();
        assert_eq!((c.uid.as_raw(), c.gid.as_raw()), (1000, 50));
        assert_eq!(c.name.as_deref(), Some("web"));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(
            resolve("nobody-here", None),
            Err(SpawnError::UnknownUser(_))
        ));
        assert!(matches!(
            resolve("web", Some("nogroup-here")),
            Err(SpawnError::UnknownGroup(_))
        ));
    }
}
