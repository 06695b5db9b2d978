//! Where the function's processes listen, read from `/proc`, for the diagnostics of a
//! function that does not accept where fc-init waits (docs/reference.md §8): the TCP sockets in
//! LISTEN state of `/proc/net/tcp` and `/proc/net/tcp6`, matched by inode against the
//! sockets the processes of the function's group hold open (`/proc/PID/fd`).
//!
//! Everything here is best effort: a process that exits meanwhile, a `/proc` that is not
//! mounted or not readable (another user's process), simply lists fewer ports.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The TCP addresses the processes of process group `pgid` listen on, sorted, no repeats.
pub fn listening_addresses(pgid: i32) -> Vec<SocketAddr> {
    let mut listening: HashMap<u64, SocketAddr> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            listening.extend(parse_listening(&text));
        }
    }
    if listening.is_empty() {
        return Vec::new();
    }
    let mut found = BTreeSet::new();
    for pid in group_members(pgid) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(addr) =
                socket_inode(&target.to_string_lossy()).and_then(|i| listening.get(&i))
            {
                found.insert(*addr);
            }
        }
    }
    found.into_iter().collect()
}

/// The pids whose process group is `pgid` (field 5 of `/proc/PID/stat`).
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![pgid];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_pgid(&stat))
                == Some(pgid)
        })
        .collect()
}

/// The process group of a `/proc/PID/stat` line; the command name in parentheses may itself
/// hold spaces and parentheses, so the fields are counted after its last `)`.
fn stat_pgid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state, ppid, pgrp
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The sockets in LISTEN state (`st` = 0A) of a `/proc/net/tcp{,6}` table: inode → address.
fn parse_listening(text: &str) -> Vec<(u64, SocketAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                return None;
            }
            let addr = parse_address(fields[1])?;
            let inode = fields[9].parse().ok()?;
            Some((inode, addr))
        })
        .collect()
}

/// `0100007F:1F40` (IPv4) or 32 hex digits `:PORT` (IPv6): each 32-bit word of the address is
/// printed in the kernel's byte order (little-endian here), the port in big-endian hex.
fn parse_address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.swap_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            // A dual-stack socket bound to `::` serves IPv4 too; shown as it was bound.
            IpAddr::V6(v6)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The start hint's text: where fc-init waits and where the function listens instead.
pub fn start_hint(pid: i32, waits_on: &str, listens: &[SocketAddr]) -> String {
    match listens {
        [] => format!(
            "function (pid {pid}) is not accepting on {waits_on}; none of its processes listens on a TCP port"
        ),
        addrs => {
            let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            format!(
                "function (pid {pid}) is not accepting on {waits_on}; it listens on {} (set function.port = {})",
                list.join(", "),
                addrs[0].port()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_proc_net_tcp() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            parse_listening(v4),
            [(4242, "0.0.0.0:8000".parse().unwrap())]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(parse_listening(v6), [(77, "[::1]:8080".parse().unwrap())]);
    }

    #[test]
    fn stat_and_fd_links() {
        assert_eq!(stat_pgid("42 (my (odd) app) S 1 42 42 0 -1"), Some(42));
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn the_hint_names_the_port() {
        let addrs = ["0.0.0.0:8000".parse().unwrap()];
        assert_eq!(
            start_hint(42, "/run/fc-init/function.sock", &addrs),
            "function (pid 42) is not accepting on /run/fc-init/function.sock; it listens on 0.0.0.0:8000 (set function.port = 8000)"
        );
    }
}
