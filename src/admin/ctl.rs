//! `fc-init ctl`: the admin API from the command line. Prints the API's JSON unchanged on stdout;
//! exits 0 on a 2xx answer, 1 on any other answer or when the socket cannot be reached, 2 on a
//! usage error. `ctl health` exits 0 only when the instance is ready, so it works as an exec
//! readiness probe.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{self, Sources};
use crate::events::model::Status;
use crate::http::client;

const USAGE: &str = "\
Usage: fc-init ctl [--socket PATH] [-c FILE] SUBCOMMAND
  health                                   exit 0 only when the instance is ready
  status                                   instance state, pid, restarts, in flight, queued
  events list [--status S,..] [--limit N] [--offset N] [--requestId ID]
              [--requestIdPrefix P] [--functionName F] [--qualifier Q] [--invocationType T]
              [--since T] [--until T] [--startedSince T] [--startedUntil T]
              [--endedSince T] [--endedUntil T] [--orderBy submitTime|startTime|endTime]
              [--order asc|desc]
  events get ID
  events result ID [--wait 30s]            the function's answer's body (exit 0 for a 2xx)
  events terminate ID [--grace]            abort an event (SIGTERM first with --grace)";

/// `events list` options that take a value and go into the query as they are named.
const LIST_OPTIONS: &[&str] = &[
    "status",
    "limit",
    "offset",
    "requestId",
    "requestIdPrefix",
    "functionName",
    "qualifier",
    "invocationType",
    "since",
    "until",
    "startedSince",
    "startedUntil",
    "endedSince",
    "endedUntil",
    "orderBy",
    "order",
];

/// How long one admin call may take; terminate waits for the event to end.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The most events one `events list` asks for: the admin API's own bound (`limit`).
const MAX_LIMIT: u64 = 100;

pub fn main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("fc-init ctl: {msg}\n\n{USAGE}");
            crate::exit::USAGE
        }
    }
}

struct Usage(String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

/// The command line's words: `--socket` and `-c` are taken here, anywhere among them; the
/// subcommand's words and options are handed on (options as `--name=value`) to
/// [`request_for`], which knows which subcommand takes which.
fn run(args: Vec<OsString>) -> Result<i32, Usage> {
    use lexopt::prelude::*;
    let mut socket: Option<PathBuf> = None;
    let mut config_flag: Option<PathBuf> = None;
    let mut words = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("socket") => socket = Some(parser.value()?.into()),
            Short('c') | Long("config") => config_flag = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(crate::exit::OK);
            }
            Long(name) if LIST_OPTIONS.contains(&name) || name == "wait" => {
                let name = format!("--{name}");
                let value = parser.value()?.string()?;
                words.push(format!("{name}={value}"));
            }
            Long("grace") => words.push("--grace".to_owned()),
            Value(word) => words.push(word.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let (method, path, body) = request_for(&words)?;
    let socket = match socket {
        Some(s) => s,
        None => match find_socket(config_flag) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fc-init ctl: {e}");
                return Ok(crate::exit::USAGE);
            }
        },
    };
    let deadline = Instant::now() + CALL_TIMEOUT;
    let answer = client::connect_unix(&socket, deadline).and_then(|mut conn| {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        client::request(&mut conn, method, &path, headers, body.as_bytes(), deadline)
    });
    let result = words.get(1).is_some_and(|w| w == "result");
    match answer {
        // The function's answer: its body as it is; fc-init's own answers (not ended, no
        // answer, unknown) are JSON on stdout and exit 1.
        Ok(resp) if result => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&resp.body).and_then(|()| out.flush());
            let answered = resp.header("x-fc-async-status").is_some();
            Ok(match answered && resp.is_success() {
                true => crate::exit::OK,
                false => crate::exit::FAILURE,
            })
        }
        Ok(resp) => {
            println!("{}", String::from_utf8_lossy(&resp.body));
            Ok(match resp.is_success() {
                true => crate::exit::OK,
                false => crate::exit::FAILURE,
            })
        }
        Err(e) => {
            eprintln!("fc-init ctl: {}: {e}", socket.display());
            Ok(crate::exit::FAILURE)
        }
    }
}

/// The admin request a subcommand makes.
fn request_for(words: &[String]) -> Result<(&'static str, String, String), Usage> {
    let mut w: Vec<&str> = words.iter().map(String::as_str).collect();
    // `--grace` may come before the event's id as well as after it.
    if w.starts_with(&["events", "terminate"]) {
        if let Some(at) = w.iter().position(|word| *word == "--grace") {
            w.remove(at);
            w.push("--grace");
        }
    }
    match w.as_slice() {
        ["health"] => Ok(("GET", "/health".into(), String::new())),
        ["status"] => Ok(("GET", "/status".into(), String::new())),
        ["events", "list", opts @ ..] => {
            let query = list_query(opts)?;
            let path = if query.is_empty() {
                "/async-events".into()
            } else {
                format!("/async-events?{}", query.join("&"))
            };
            Ok(("GET", path, String::new()))
        }
        ["events", "get", id] => Ok((
            "GET",
            format!("/async-events/{}", encode(id)),
            String::new(),
        )),
        ["events", "terminate", id, rest @ ..] => {
            let grace = match rest {
                [] => false,
                ["--grace"] => true,
                other => return Err(Usage(format!("unexpected arguments: {other:?}"))),
            };
            Ok((
                "POST",
                format!("/async-events/{}/terminate", encode(id)),
                serde_json::json!({ "graceShutdown": grace }).to_string(),
            ))
        }
        ["events", "result", id, rest @ ..] => {
            let query = match rest {
                [] => String::new(),
                [wait] if wait.starts_with("--wait=") => {
                    let v = &wait["--wait=".len()..];
                    let d = humantime::parse_duration(v)
                        .ok()
                        .or_else(|| v.parse::<u64>().ok().map(Duration::from_secs))
                        .ok_or_else(|| {
                            Usage(format!("--wait takes a duration such as 30s, not {v:?}"))
                        })?;
                    if d > Duration::from_secs(60) {
                        return Err(Usage(format!("--wait must be at most 60s, not {v:?}")));
                    }
                    format!("?wait={}ms", d.as_millis())
                }
                other => return Err(Usage(format!("unexpected arguments: {other:?}"))),
            };
            Ok((
                "GET",
                format!("/async-events/{}/result{query}", encode(id)),
                String::new(),
            ))
        }
        ["events", "get" | "terminate" | "result"] => {
            Err(Usage(format!("events {} needs an event id", w[1])))
        }
        ["events", "get", _, extra @ ..] => {
            Err(Usage(format!("unexpected arguments: {}", extra.join(" "))))
        }
        ["events", other, ..] => Err(Usage(format!(
            "unknown events subcommand {other:?}: use list, get, result or terminate"
        ))),
        ["events"] => Err(Usage("events needs list, get, result or terminate".into())),
        [] => Err(Usage("no subcommand".into())),
        other => Err(Usage(format!("unknown subcommand: {}", other.join(" ")))),
    }
}

/// The query of `events list`: `--status S,..` (each a status the API knows), `--limit N`
/// (0 to 100; 0 counts only), `--offset N`; a bad value is a usage error, before anything is asked.
fn list_query(opts: &[&str]) -> Result<Vec<String>, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(opts.iter().copied());
    let mut query = Vec::new();
    while let Some(arg) = parser.next()? {
        let (key, value) = match arg {
            Long("status") => {
                let value = parser.value()?.string()?;
                for status in value.split(',').filter(|s| !s.is_empty()) {
                    if Status::parse(status).is_none() {
                        let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                        return Err(Usage(format!(
                            "--status: unknown status {status:?}; one of {}",
                            known.join(", ")
                        )));
                    }
                }
                ("status", value)
            }
            Long(name @ ("limit" | "offset")) => {
                let key = if name == "limit" { "limit" } else { "offset" };
                let value = parser.value()?.string()?;
                let n: u64 = value
                    .parse()
                    .map_err(|_| Usage(format!("--{key} takes a whole number, not {value:?}")))?;
                if key == "limit" && n > MAX_LIMIT {
                    return Err(Usage(format!(
                        "--limit must be at most {MAX_LIMIT}, not {n}"
                    )));
                }
                (key, value)
            }
            Long(
                name @ ("since" | "until" | "startedSince" | "startedUntil" | "endedSince"
                | "endedUntil"),
            ) => {
                let key = LIST_OPTIONS.iter().find(|k| **k == name).expect("listed");
                let value = parser.value()?.string()?;
                if crate::events::time::parse_time_ms(&value).is_none() {
                    return Err(Usage(format!(
                        "--{key} takes an RFC 3339 time such as 2026-01-02T03:04:05Z, not {value:?}"
                    )));
                }
                (*key, value)
            }
            Long("orderBy") => {
                let value = parser.value()?.string()?;
                if crate::events::model::OrderBy::parse(&value).is_none() {
                    return Err(Usage(format!(
                        "--orderBy takes submitTime, startTime or endTime, not {value:?}"
                    )));
                }
                ("orderBy", value)
            }
            Long("order") => {
                let value = parser.value()?.string()?;
                if !["asc", "desc"].contains(&value.to_ascii_lowercase().as_str()) {
                    return Err(Usage(format!("--order takes asc or desc, not {value:?}")));
                }
                ("order", value)
            }
            Long("invocationType") => {
                let value = parser.value()?.string()?;
                if !["async", "sync"].contains(&value.to_ascii_lowercase().as_str()) {
                    return Err(Usage(format!(
                        "--invocationType takes Async or Sync, not {value:?}"
                    )));
                }
                ("invocationType", value)
            }
            Long(name) if LIST_OPTIONS.contains(&name) => {
                let key = LIST_OPTIONS.iter().find(|k| **k == name).expect("listed");
                (*key, parser.value()?.string()?)
            }
            Long(other) => return Err(Usage(format!("unknown option for events list: --{other}"))),
            other => return Err(other.unexpected().into()),
        };
        query.push(format!("{key}={}", encode(&value)));
    }
    Ok(query)
}

/// Everything but RFC 3986's unreserved characters (section 2.3) and the comma of a status list.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',');

/// Percent-encodes a path segment or a query value.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENCODED).to_string()
}

/// The admin socket named by the configuration (`-c`, `FC_INIT_CONFIG`, the default file), or
/// its default path.
fn find_socket(config_flag: Option<PathBuf>) -> Result<PathBuf, config::ConfigError> {
    let sources = Sources {
        config_flag,
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        euid: nix::unistd::geteuid().as_raw(),
        ..Sources::default()
    };
    Ok(config::load(&sources)?.admin.socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(words: &[&str]) -> Result<(&'static str, String, String), Usage> {
        request_for(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn subcommands_map_to_admin_requests() {
        assert_eq!(req(&["health"]).ok().unwrap().1, "/health");
        let (_, path, _) = req(&["events", "list", "--status", "QUEUED,RUNNING", "--limit=5"])
            .ok()
            .unwrap();
        assert_eq!(path, "/async-events?status=QUEUED,RUNNING&limit=5");
        let (m, path, body) = req(&["events", "terminate", "a b", "--grace"])
            .ok()
            .unwrap();
        assert_eq!(
            (m, path.as_str(), body.as_str()),
            (
                "POST",
                "/async-events/a%20b/terminate",
                r#"{"graceShutdown":true}"#
            )
        );
        assert!(req(&["events", "list", "--limit", "x"]).is_err());
        assert!(req(&["bogus"]).is_err());
        assert!(req(&[]).is_err());
    }

    #[test]
    fn ctl_events_get_without_an_id_is_a_usage_error_that_says_so() {
        for (words, says) in [
            (&["events", "get"][..], "events get needs an event id"),
            (
                &["events", "terminate"][..],
                "events terminate needs an event id",
            ),
            (
                &["events"][..],
                "events needs list, get, result or terminate",
            ),
            (&["events", "show", "x"][..], "unknown events subcommand"),
        ] {
            match req(words) {
                Err(Usage(message)) => assert!(message.contains(says), "{words:?}: {message}"),
                Ok(r) => panic!("{words:?} made {r:?}"),
            }
        }
    }

    #[test]
    fn bad_option_values_and_grace_anywhere() {
        for words in [
            &["events", "list", "--status", "BOGUS"][..],
            &["events", "list", "--status=QUEUED,nope"][..],
            &["events", "list", "--limit", "500"][..],
            &["events", "list", "--offset=-1"][..],
            &["events", "list", "--grace"][..],
        ] {
            assert!(req(words).is_err(), "{words:?}");
        }
        let (_, path, _) = req(&["events", "list", "--status=queued", "--limit", "0"])
            .ok()
            .unwrap();
        assert_eq!(path, "/async-events?status=queued&limit=0");
        let (_, path, body) = req(&["events", "terminate", "--grace", "x"]).ok().unwrap();
        assert_eq!(
            (path.as_str(), body.as_str()),
            ("/async-events/x/terminate", r#"{"graceShutdown":true}"#)
        );
    }
}
