//! Finding the master through Redis Sentinel (`redis+sentinel://`), with every connection
//! bounded in time.
//!
//! The redis crate's synchronous Sentinel client connects to the Sentinels and to the master
//! it checks with no read timeout, so one SIGSTOPped Sentinel or master (it accepts, then
//! never answers) would hang the thread that asks, and every thread waiting for the answer.
//! So fc-init asks the Sentinels itself, as the Sentinel client spec says, with its own
//! connect, read and write timeouts: each Sentinel in turn (`SENTINEL
//! GET-MASTER-ADDR-BY-NAME`) until one names the master; the one that answered is asked first
//! next time. The caller then checks the master's `ROLE` on its own bounded connection.
//! With `rediss+sentinel://` both the Sentinels and the master they name are reached over TLS,
//! trusting the CAs of `?ca=` ([`Certs`]), the master's certificate checked for the address the
//! Sentinels give.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, ErrorKind, RedisConnectionInfo, RedisError, RedisResult};

use super::connect::{bound, node_info, Certs};
use crate::events::signal::lock;

/// The longest a Sentinel may take to accept or to answer before the next one is asked.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);

/// The Sentinels watching the fleet's master, and how its master is reached.
pub struct Sentinels {
    /// In the order they are asked: the last one that answered first.
    nodes: Mutex<Vec<Client>>,
    /// The master's name in the Sentinels' configuration.
    name: String,
    /// The master's login and database.
    login: RedisConnectionInfo,
    tls: bool,
    certs: Certs,
}

/// How the Sentinels themselves are reached.
pub struct Watchers<'a> {
    pub nodes: &'a [(String, u16)],
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl Sentinels {
    pub fn new(
        watchers: Watchers<'_>,
        name: &str,
        login: RedisConnectionInfo,
        tls: bool,
        certs: Certs,
    ) -> Result<Sentinels, String> {
        let mut sentinel_login = RedisConnectionInfo::default();
        if let Some(user) = watchers.username {
            sentinel_login = sentinel_login.set_username(user);
        }
        if let Some(password) = watchers.password {
            sentinel_login = sentinel_login.set_password(password);
        }
        let nodes = watchers
            .nodes
            .iter()
            .map(|(h, p)| certs.client(node_info(h, *p, tls, &sentinel_login)))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        Ok(Sentinels {
            nodes: Mutex::new(nodes),
            name: name.to_owned(),
            login,
            tls,
            certs,
        })
    }

    /// A client of the master the first Sentinel that answers names now (its `ROLE` is the
    /// caller's to check).
    pub fn master(&self) -> RedisResult<Client> {
        let mut nodes = lock(&self.nodes);
        let mut last = None;
        for i in 0..nodes.len() {
            match ask(&nodes[i], &self.name) {
                Ok(Some((host, port))) => {
                    // The Sentinel client spec: the Sentinel that answered is asked first.
                    let answered = nodes.remove(i);
                    nodes.insert(0, answered);
                    return self
                        .certs
                        .client(node_info(&host, port, self.tls, &self.login));
                }
                Ok(None) => {
                    last = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "no Sentinel knows a master of this name",
                        self.name.clone(),
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no Sentinel is configured"))
        }))
    }
}

/// One Sentinel's answer: the master's address, or `None` when it does not know the name.
fn ask(sentinel: &Client, name: &str) -> RedisResult<Option<(String, u16)>> {
    let mut conn = sentinel.get_connection_with_timeout(SENTINEL_TIMEOUT)?;
    bound(&conn, SENTINEL_TIMEOUT)?;
    redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(name)
        .query(&mut conn)
}
