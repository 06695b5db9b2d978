//! Reaping: collects the exit status of every child, adopted orphans included.
//!
//! SIGCHLD coalesces (several exits can be reported by one signal), so one call drains
//! `waitpid(-1, WNOHANG)` until the kernel says nothing more has exited. Only the supervisor
//! thread calls this; nothing else in fc-init waits on a pid.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention, which is also fc-init's own exit status: the code, or 128+N.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(sig) => crate::exit::for_signal(sig),
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exited with status {code}"),
            Exit::Signal(sig) => write!(f, "killed by {}", super::signals::name(*sig)),
        }
    }
}

/// What a drain found after reporting every exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// Some children are still running.
    Some,
    /// ECHILD: fc-init has no child left at all.
    None,
}

/// Reaps every child that has exited, calling `on_exit` for each, until none is left to reap.
pub fn reap(mut on_exit: impl FnMut(Pid, Exit)) -> Remaining {
    loop {
        match crate::sys::retry(|| waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))) {
            Ok(WaitStatus::Exited(pid, code)) => on_exit(pid, Exit::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => on_exit(pid, Exit::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) => return Remaining::Some,
            // Stopped/continued are only reported with WUNTRACED/WCONTINUED, which are not asked for.
            Ok(_) => continue,
            Err(Errno::ECHILD) => return Remaining::None,
            Err(e) => {
                log::error!("waitpid: {e}");
                return Remaining::Some;
            }
        }
    }
}

/// The pids whose parent is fc-init: the function, hook commands and adopted orphans.
///
/// An adopted orphan is never announced until it exits, so the kernel is asked: first through
/// `/proc/self/task/*/children` (cheap: one small file per thread of fc-init), else by scanning
/// every process's parent in /proc. When neither can be read the list is empty and the callers
/// fall back on killing by process group.
pub fn children() -> Vec<Pid> {
    from_task_children().unwrap_or_else(scan_proc)
}

/// Children as listed per thread (proc(5), CONFIG_PROC_CHILDREN). An orphan may be attached to
/// any live thread of its new parent, so every thread's list is read.
fn from_task_children() -> Option<Vec<Pid>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(list) => pids.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw),
            ),
            // The thread ended between readdir and read: it has no children to list any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && task.path().exists() => {
                return None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
    }
    Some(pids)
}

fn scan_proc() -> Vec<Pid> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // The process may exit between readdir and read: such an entry is simply skipped.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces or ')': the fields that
        // follow start after the last ')'. Field 4 (ppid) is the second after it.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_ascii_whitespace();
        let _state = fields.next();
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            pids.push(Pid::from_raw(pid));
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_of_listing_children_agree() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("spawn sleep");
        let pid = Pid::from_raw(child.id() as i32);
        let listed = from_task_children();
        let scanned = scan_proc();
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert!(scanned.contains(&pid), "{scanned:?}");
        if let Some(listed) = listed {
            assert!(listed.contains(&pid), "{listed:?}");
        }
    }
}
