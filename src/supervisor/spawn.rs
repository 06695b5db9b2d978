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

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Group, Pid, Uid, User};

use crate::config::UserSpec;

/// Why a program could not be started; maps to tini's 126/127 convention.
#[derive(Debug)]
pub enum SpawnError {
    /// No such program (exit 127).
    NotFound { program: String, source: io::Error },
    /// Found but not executable, or exec refused it (exit 126).
    NotExecutable { program: String, source: io::Error },
    /// `function.user` names nobody.
    UnknownUser(String),
    /// `function.user` names no group.
    UnknownGroup(String),
    /// Looking up users or groups failed.
    Lookup { what: String, source: nix::Error },
}

impl SpawnError {
    /// The exit status fc-init ends with when the function cannot be started.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } => 126,
            _ => 1,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound { program, source } => {
                write!(f, "cannot run {program:?}: command not found ({source})")
            }
            SpawnError::NotExecutable { program, source } => {
                write!(f, "cannot run {program:?}: not executable ({source})")
            }
            SpawnError::UnknownUser(u) => write!(f, "function.user: no such user {u:?}"),
            SpawnError::UnknownGroup(g) => write!(f, "function.user: no such group {g:?}"),
            SpawnError::Lookup { what, source } => write!(f, "looking up {what}: {source}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::NotFound { source, .. } | SpawnError::NotExecutable { source, .. } => {
                Some(source)
            }
            SpawnError::Lookup { source, .. } => Some(source),
            _ => None,
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
    pub fn resolve(spec: &UserSpec) -> Result<Credentials, SpawnError> {
        let lookup = |what: &str, source| SpawnError::Lookup {
            what: what.to_owned(),
            source,
        };
        let user = match spec.user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(|e| lookup(&spec.user, e))?,
            Err(_) => Some(
                User::from_name(&spec.user)
                    .map_err(|e| lookup(&spec.user, e))?
                    .ok_or_else(|| SpawnError::UnknownUser(spec.user.clone()))?,
            ),
        };
        let uid = match &user {
            Some(u) => u.uid,
            // A numeric uid without a passwd entry is allowed, as in Docker's USER.
            None => Uid::from_raw(spec.user.parse().expect("checked numeric above")),
        };
        let gid = match &spec.group {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => Gid::from_raw(gid),
                Err(_) => {
                    Group::from_name(g)
                        .map_err(|e| lookup(g, e))?
                        .ok_or_else(|| SpawnError::UnknownGroup(g.clone()))?
                        .gid
                }
            },
            None => user
                .as_ref()
                .map(|u| u.gid)
                .unwrap_or(Gid::from_raw(uid.as_raw())),
        };
        let groups = match &user {
            Some(u) => {
                let name = CString::new(u.name.as_bytes())
                    .map_err(|_| SpawnError::UnknownUser(u.name.clone()))?;
                nix::unistd::getgrouplist(&name, gid)
                    .map_err(|e| lookup("supplementary groups", e))?
            }
            None => vec![gid],
        };
        Ok(Credentials {
            uid,
            gid,
            groups,
            home: user.as_ref().map(|u| u.dir.clone()),
            name: user.map(|u| u.name),
        })
    }
}

/// What to start.
pub struct Spec<'a> {
    pub argv: &'a [String],
    pub working_dir: Option<&'a Path>,
    /// Added to (and overriding) the inherited environment.
    pub env: &'a BTreeMap<String, String>,
    pub credentials: Option<&'a Credentials>,
    /// Hand the terminal's foreground to the new process group when stdin is a terminal, so an
    /// interactive function can read it (tini does the same). Only for the function itself.
    pub foreground: bool,
}

/// Starts `spec` in a new process group whose id is its pid. Never waits.
pub fn spawn(spec: &Spec<'_>) -> Result<Pid, SpawnError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..]);
    cmd.envs(spec.env);
    if let Some(dir) = spec.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(creds) = spec.credentials {
        if let Some(home) = &creds.home {
            if !spec.env.contains_key("HOME") {
                cmd.env("HOME", home);
            }
        }
        if let Some(name) = &creds.name {
            if !spec.env.contains_key("USER") {
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(SpawnError::NotFound { program, source: e })
        }
        Err(e) => Err(SpawnError::NotExecutable { program, source: e }),
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
