//! systemd's readiness protocol (sd_notify(3)): `READY=1` once the instance is initialized,
//! `STOPPING=1` when the shutdown starts. A no-op unless `NOTIFY_SOCKET` is set.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends one state line to `$NOTIFY_SOCKET`; failures are logged, never fatal (a supervisor that
/// cannot be told is no reason to stop serving).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| {
        let sock = UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        // A leading '@' names a socket in the abstract namespace (sd_notify(3)).
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = result {
        log::warn!(
            "NOTIFY_SOCKET {}: sending {state}: {e}",
            path.to_string_lossy()
        );
    }
}
