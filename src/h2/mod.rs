//! h2c: HTTP/2 over cleartext, relayed between a client and the function (CONTRACT §13).
//! Placeholder; the connection core follows.

pub mod frame;
pub mod hpack;
mod huffman;
