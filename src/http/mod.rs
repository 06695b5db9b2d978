pub mod client {
    use std::time::Instant;
    pub struct Conn;
    #[derive(Debug)]
    pub struct E;
    impl std::fmt::Display for E { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "x") } }
    impl Conn {
        pub fn connect_unix(_p: &std::path::Path, _d: Instant) -> Result<Conn, E> { Err(E) }
        pub fn connect_tcp(_p: &std::net::SocketAddr, _d: Instant) -> Result<Conn, E> { Err(E) }
    }
    pub struct R { pub status: u16 }
    pub fn request(_c: &mut Conn, _m: &str, _p: &str, _h: &[(&str, &str)], _b: &[u8], _d: Instant) -> Result<R, E> { Err(E) }
}
pub fn new_request_id() -> String { "x".into() }
