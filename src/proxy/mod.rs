//! Invocation traffic: the listener and the forwarding of requests to the function.

use std::sync::Arc;

use crate::config::Config;
use crate::state::Shared;
use crate::supervisor::Events;

/// Why the listener could not be started.
#[derive(Debug)]
pub enum ProxyError {
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Bind { addr, source } => write!(f, "listening on {addr}: {source}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Binds `server.listen` and starts serving on background threads.
pub fn start(_cfg: Arc<Config>, _shared: Arc<Shared>, _events: Events) -> Result<(), ProxyError> {
    Ok(())
}
