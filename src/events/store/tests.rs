//! Tests of the event store on real files (and, where mounting is permitted, on tiny or
//! read-only tmpfs mounts).

use super::*;
use crate::events::model::DeliveryStatus;
use std::os::unix::fs::PermissionsExt;
use std::sync::Barrier;
use std::thread;

mod disk;
mod lifecycle;
mod lists;
mod parity;
mod submissions;
mod support;
use support::*;
