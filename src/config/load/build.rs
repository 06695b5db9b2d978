//! Building the typed `Config` from the merged settings: every key's value or its default,
//! the defaults that depend on other keys and on the environment (the runtime directory, the
//! function's name and port, the platform), and the rules that span keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::config::schema::{self, Val};
use crate::config::{
    AdminConfig, AsyncBackend, AsyncConfig, Config, Endpoint, ForwardTo, FunctionConfig,
    HookAction, InitializerConfig, LogConfig, LogFormat, OnFailure, Platform, PreStopConfig,
    Problem, RestartPolicy, ServerConfig, ShutdownConfig, SignalsConfig, Sources,
};

use super::{fc_port_variable, free_loopback_port, runtime_dir, Settings, DEFAULT_LISTEN};

pub(super) fn build(s: &Settings, sources: &Sources, problems: &mut Vec<Problem>) -> Config {
    let runtime = runtime_dir(sources.euid, &sources.env);

    problems.extend(s.check_exclusive("function", "socket", "port"));
    let port = match s.val("function", "port") {
        Some(Val::Int(p)) => u16::try_from(*p).ok(),
        _ => None,
    };
    let socket = s.text("function", "socket");
    let endpoint_set = port.is_some() || socket.is_some();
    // An FC-style server listens on `$FC_SERVER_PORT`, which is fc-init's own listener: with
    // FC's port variable set and no endpoint configured, the function gets a port of its own.
    let fc_port = fc_port_variable(&sources.env).map(|(var, _)| var);
    let endpoint = match (port, socket, fc_port) {
        (Some(port), _, _) => Endpoint::Tcp(port),
        (None, Some(path), _) => Endpoint::Unix(PathBuf::from(path)),
        (None, None, Some(var)) => match free_loopback_port() {
            Ok(port) => Endpoint::Tcp(port),
            Err(e) => {
                problems.push(Problem {
                    source: format!("environment ({var})"),
                    key: "function.port".to_owned(),
                    reason: format!("cannot find a free loopback port for the function: {e}"),
                });
                Endpoint::Unix(runtime.join("function.sock"))
            }
        },
        (None, None, None) => Endpoint::Unix(runtime.join("function.sock")),
    };

    let command = s
        .list("function", "command")
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let fc_function_name = sources
        .env
        .get("FC_FUNCTION_NAME")
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control));
    let name = match (s.text("function", "name"), fc_function_name) {
        (Some(name), _) => name.to_owned(),
        (None, Some(name)) => name.clone(),
        (None, None) => command
            .first()
            .and_then(|program| Path::new(program).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            // As for FC_FUNCTION_NAME: a name with a control character (it ends up in a
            // header, and `name` itself refuses one) is not taken from the program's file.
            .filter(|n| !n.chars().any(char::is_control))
            .unwrap_or_default(),
    };
    let function = FunctionConfig {
        env: match s.val("function", "env") {
            Some(Val::Map(env)) => env.clone(),
            _ => BTreeMap::new(),
        },
        working_dir: s.text("function", "working_dir").map(PathBuf::from),
        endpoint,
        start_timeout: s.duration("function", "start_timeout"),
        name,
        timeout: s.duration("function", "timeout"),
        user: match s.val("function", "user") {
            Some(Val::User(user)) => Some(user.clone()),
            _ => None,
        },
        restart: match s.text_or_default("function", "restart") {
            "on-failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            _ => RestartPolicy::Never,
        },
        restart_backoff_max: s.duration("function", "restart_backoff_max"),
        qualifier: s
            .text("function", "qualifier")
            .map(str::to_owned)
            .or_else(|| {
                sources
                    .env
                    .get("FC_QUALIFIER")
                    .filter(|q| !q.is_empty() && !q.chars().any(char::is_control))
                    .cloned()
            })
            .unwrap_or_else(|| "LATEST".to_owned()),
        command,
    };

    let initializer = s.hook("initializer", problems).map(|action| {
        let backoff = s.duration("initializer", "backoff");
        let backoff_max = s.duration("initializer", "backoff_max");
        if backoff_max < backoff {
            // Blame whichever of the two was set (backoff_max first: it is the usual culprit).
            let blamed = s
                .get("initializer", "backoff_max")
                .map(|b| (b, "initializer.backoff_max"))
                .or_else(|| {
                    s.get("initializer", "backoff")
                        .map(|b| (b, "initializer.backoff"))
                });
            if let Some((setting, key)) = blamed {
                problems.push(Problem {
                    source: setting.source.clone(),
                    key: key.to_owned(),
                    reason: format!(
                        "backoff_max ({}) is less than backoff ({})",
                        crate::config::format_duration(backoff_max),
                        crate::config::format_duration(backoff)
                    ),
                });
            }
        }
        InitializerConfig {
            action,
            timeout: s.duration("initializer", "timeout"),
            on_failure: match s.text_or_default("initializer", "on_failure") {
                "next-request" => OnFailure::NextRequest,
                "exit" => OnFailure::Exit,
                _ => OnFailure::Retry,
            },
            max_attempts: s.count_u32("initializer", "max_attempts"),
            backoff,
            backoff_max,
        }
    });
    let pre_stop = s.hook("pre_stop", problems).map(|action| PreStopConfig {
        action,
        timeout: s.duration("pre_stop", "timeout"),
    });

    // The serving rule: fc-init listens only when the function serves HTTP, so that a plain
    // command runs under fc-init exactly as under tini.
    let http_hook = |action: Option<&HookAction>| matches!(action, Some(HookAction::Http { .. }));
    let function_serves = endpoint_set
        || http_hook(initializer.as_ref().map(|i| &i.action))
        || http_hook(pre_stop.as_ref().map(|p| &p.action));
    let listen = s
        .addr("server", "listen")
        .copied()
        .or(function_serves.then_some(DEFAULT_LISTEN));
    if let (Some(listen), Some(port)) = (listen, port) {
        if listen.port() == port && (listen.ip().is_unspecified() || listen.ip().is_loopback()) {
            problems.push(Problem {
                source: s.source_of("function", "port"),
                key: "function.port".to_owned(),
                reason: format!(
                    "the function cannot serve on port {port}: fc-init itself listens on {listen}"
                ),
            });
        }
    }
    let admin_listen = s.addr("admin", "listen").copied();
    if let (Some(admin), Some(server)) = (admin_listen, listen) {
        if admin == server {
            problems.push(Problem {
                source: s.source_of("admin", "listen"),
                key: "admin.listen".to_owned(),
                reason: format!("{admin} is also server.listen"),
            });
        }
    }

    // `auto`: FC sets both in every function instance; either alone is not FC.
    let on_fc = ["FC_FUNCTION_NAME", "FC_REGION"]
        .iter()
        .all(|var| sources.env.get(*var).is_some_and(|v| !v.is_empty()));
    let (platform, platform_auto) = match s.text("server", "platform") {
        Some("fc") => (Platform::Fc, false),
        Some("none") => (Platform::None, false),
        _ if on_fc => (Platform::Fc, true),
        _ => (Platform::None, true),
    };

    let backend = match s.text_or_default("async", "backend") {
        "redis" => AsyncBackend::Redis,
        _ => AsyncBackend::Sqlite,
    };
    let redis_url = s.text("async", "redis_url").map(str::to_owned);
    if backend == AsyncBackend::Redis && redis_url.is_none() {
        problems.push(Problem {
            source: s.source_of("async", "backend"),
            key: "async.redis_url".to_owned(),
            reason: "backend = \"redis\" needs async.redis_url (redis://host:port/db)".to_owned(),
        });
    }
    let queue = match s.text("async", "queue") {
        Some(queue) => queue.to_owned(),
        // The default follows the function's name, which may come from anywhere; a name that
        // cannot be a queue name is reported as the queue's problem, with the way out.
        None => match schema::queue_name(&function.name) {
            Ok(queue) => queue,
            Err(reason) => {
                if backend == AsyncBackend::Redis {
                    let source = s
                        .get("function", "name")
                        .map(|n| n.source.clone())
                        .or_else(|| {
                            fc_function_name.map(|_| "environment (FC_FUNCTION_NAME)".to_owned())
                        })
                        .unwrap_or_else(|| "command line (COMMAND)".to_owned());
                    problems.push(Problem {
                        source,
                        key: "async.queue".to_owned(),
                        reason: format!(
                            "the default queue name is function.name: {reason}; set async.queue"
                        ),
                    });
                }
                String::new()
            }
        },
    };

    Config {
        function,
        server: ServerConfig {
            listen,
            platform,
            platform_auto,
            max_concurrency: s.count("server", "max_concurrency"),
            max_queue: s.count("server", "max_queue"),
            max_connections: s.count("server", "max_connections"),
            max_header_bytes: usize::try_from(s.size("server", "max_header_bytes"))
                .unwrap_or(usize::MAX),
            max_body: s.size("server", "max_body"),
            header_timeout: s.duration("server", "header_timeout"),
            body_buffer: s.size("server", "body_buffer"),
            body_timeout: s.duration("server", "body_timeout"),
            idle_timeout: s.duration("server", "idle_timeout"),
            busy_poll: s.duration("server", "busy_poll"),
            body_buffer_total: s.size("server", "body_buffer_total"),
            http2: s.text_or_default("server", "http2") != "off",
        },
        initializer,
        pre_stop,
        shutdown: ShutdownConfig {
            stop_signal: match s.val_or_default("shutdown", "stop_signal") {
                Some(Val::Signal(signal)) => *signal,
                // Cannot occur: the key table's default is SIGTERM.
                _ => Signal::SIGTERM,
            },
            drain_timeout: s.duration("shutdown", "drain_timeout"),
            grace_period: s.duration("shutdown", "grace_period"),
            kill_group: s.bool("shutdown", "kill_group"),
        },
        async_: AsyncConfig {
            // Under FC's own platform FC owns asynchronous invocations (docs/reference.md §8): fc-init's
            // queue only when asked for explicitly.
            enabled: match s.val("async", "enabled") {
                Some(Val::Bool(enabled)) => *enabled,
                _ => platform != Platform::Fc,
            },
            backend,
            redis_url,
            queue,
            store: s
                .text("async", "store")
                .map_or_else(|| runtime.join("events.db"), PathBuf::from),
            retention: s.duration("async", "retention"),
            max_concurrency: s.count("async", "max_concurrency"),
            max_retries: s.count_u32("async", "max_retries"),
            max_queued: s.int("async", "max_queued"),
            max_payload: s.size("async", "max_payload"),
            redis_min_replicas: match s.val("async", "redis_min_replicas") {
                Some(Val::Int(n)) => Some(u32::try_from(*n).unwrap_or(u32::MAX)),
                _ => None,
            },
            max_event_age: s.duration("async", "max_event_age"),
            max_result: s.size("async", "max_result"),
            destination_retry_for: s.duration("async", "destination_retry_for"),
            on_success: s.text("async", "on_success").map(str::to_owned),
            on_failure: s.text("async", "on_failure").map(str::to_owned),
        },
        admin: AdminConfig {
            socket: s
                .text("admin", "socket")
                .map_or_else(|| runtime.join("admin.sock"), PathBuf::from),
            listen: admin_listen,
        },
        log: LogConfig {
            invocations: s.bool("log", "invocations"),
            format: match s.text_or_default("log", "format") {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            },
        },
        signals: SignalsConfig {
            forward_to: match s.text_or_default("signals", "forward_to") {
                "group" => ForwardTo::Group,
                _ => ForwardTo::Process,
            },
            rewrite: match s.val("signals", "rewrite") {
                Some(Val::Rewrite(map)) => map.clone(),
                _ => BTreeMap::new(),
            },
            success_codes: match s.val("signals", "success_codes") {
                Some(Val::Codes(codes)) => codes.clone(),
                _ => Vec::new(),
            },
            parent_death_signal: match s.val("signals", "parent_death_signal") {
                Some(Val::Signo(n)) => Some(*n),
                _ => None,
            },
            warn_reaped: s.bool("signals", "warn_reaped"),
        },
        runtime_dir: runtime,
    }
}
