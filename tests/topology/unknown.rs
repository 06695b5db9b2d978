//! A submission whose reply is lost after Redis stored it (the bug: such a connection reset
//! answered 503 "not stored", yet the event was stored and ran). Between fc-init and Redis
//! sits a proxy that, once armed, forwards the submission's script to Redis, drops the reply,
//! cuts the connection and refuses the next connections: fc-init must find out that the event
//! was stored and answer 202, and the event must run once.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::servers::{available, Node};
use crate::util::*;
use crate::Instance;

#[derive(Default)]
struct Plan {
    /// Cut the connection that carries a command with this text.
    armed: AtomicBool,
    /// Connections still to refuse after the cut.
    refuse: AtomicUsize,
}

fn proxy(upstream: u16, plan: Arc<Plan>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if plan
                .refuse
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let dead = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (plan2, dead2, client2) = (plan.clone(), dead.clone(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    let hit = |s: &[u8]| chunk.windows(s.len()).any(|w| w == s);
                    let cut = hit(b"EVALSHA")
                        && hit(b"cut-1")
                        && plan2.armed.swap(false, Ordering::AcqRel);
                    if cut {
                        // The reply must not reach fc-init: marked dead before Redis has it.
                        dead2.store(true, Ordering::Release);
                        plan2.refuse.store(3, Ordering::Release);
                    }
                    if s_out.write_all(chunk).is_err() {
                        break;
                    }
                    if cut {
                        let _ = client2.shutdown(Shutdown::Both);
                        break;
                    }
                }
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 || dead.load(Ordering::Acquire) {
                        break;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_reply_lost_after_the_write_is_resolved_to_202_and_the_event_runs_once() {
    if !available("unknown outcome") {
        return;
    }
    let node = Node::start("unknown", &[]);
    let plan = Arc::new(Plan::default());
    let port = proxy(node.port, plan.clone());
    let url = format!("redis://127.0.0.1:{port}/0");
    let i = Instance::start("unknown-i", &url, "unk", "");
    // The submit script is cached on the server first, so the cut one is the storing call.
    assert_eq!(i.submit("warm-1", "0").0, 202);
    plan.armed.store(true, Ordering::Release);
    let (status, rid) = i.submit("cut-1", "0");
    assert!(
        !plan.armed.load(Ordering::Acquire),
        "the proxy cut the submission"
    );
    assert_eq!((status, rid.as_deref()), (202, Some("cut-1")));
    let stored = node.query(&["HGET", "fc-init:{unk}:ev:cut-1", "submit"]);
    assert!(!stored.is_empty(), "the event is stored");
    wait_for("cut-1 ran", || {
        i.runs().iter().any(|(id, _)| id == "cut-1").then_some(())
    });
    let (_, e) = i.ctl(&["events", "get", "cut-1"]);
    assert_eq!(e["status"], "FINISHED", "{e}");
    let runs = i.runs().iter().filter(|(id, _)| id == "cut-1").count();
    assert_eq!(runs, 1);
}
