//! Whole exchanges driven through the I/O seam with scripted bytes and a fake clock
//! ([`super::sim::Sim`]): each test is a line of the contract, written as bytes.

mod exchanges;
mod failures;
mod resends;

use super::sim::{get, ok, Sim};
