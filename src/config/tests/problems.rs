//! Tests of what the loader refuses and how it reports it: every problem of every source at
//! once, each naming its source, key and reason; regressions found by the fuzz target.

use super::*;

#[test]
fn a_missing_explicit_file_is_a_problem() {
    let mut s = sources();
    s.config_flag = Some(PathBuf::from("/nonexistent/flag.toml"));
    let p = problems(&s);
    assert_problem(&p, "/nonexistent/flag.toml", "", "named by -c/--config");

    let mut s = sources();
    s.env
        .insert("FC_INIT_CONFIG".into(), "/nonexistent/env.toml".into());
    let p = problems(&s);
    assert_problem(&p, "/nonexistent/env.toml", "", "named by FC_INIT_CONFIG");
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let s = with_file("[server]\nmax_queue = 10\nlisten = \"0.0.0.0:1\n");
    let path = s.config_flag.clone().expect("set by with_file");
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].source, path.display().to_string());
    assert!(p[0].reason.contains("line 3"), "{}", p[0]);
    assert!(!p[0].to_string().contains('\n'), "one line: {}", p[0]);
}

#[test]
fn unknown_sections_and_keys_are_problems() {
    let s = with_file("[function]\ncomand = [\"x\"]\n[sever]\nlisten = \"0.0.0.0:1\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_problem(&p, &file, "function.comand", "unknown key");
    assert_problem(&p, &file, "sever", "unknown section");
}

#[test]
fn a_section_that_is_not_a_table_is_a_problem() {
    let s = with_file("server = 3\n");
    let file = file_of(&s);
    assert_problem(&problems(&s), &file, "server", "expected a table");
}

#[test]
fn wrong_types_and_bad_values_are_problems() {
    let s = with_file(
        r#"
[function]
command = "/bin/app"
port = 70000
restart = "sometimes"
user = ""
timeout = 30
env = { A = [1] }
[server]
listen = "localhost:9000"
max_connections = 0
max_header_bytes = "512"
max_body = "lots"
header_timeout = "0s"
max_concurrency = -1
[initializer]
path = "initialize"
on_failure = "panic"
[shutdown]
stop_signal = "SIGKILL"
kill_group = "yes"
[async]
max_concurrency = 0
max_queued = 0
[log]
format = "xml"
"#,
    );
    let file = file_of(&s);
    let p = problems(&s);
    let expected = [
        ("function.command", "expected an array of strings"),
        ("function.port", "not between 1 and 65535"),
        (
            "function.restart",
            "is not one of \"never\", \"on-failure\", \"always\"",
        ),
        ("function.user", "is not a user"),
        ("function.timeout", "expected a duration string"),
        ("function.env", "variable A"),
        ("server.listen", "IP:PORT"),
        ("server.max_connections", "below the minimum of 1"),
        (
            "server.max_header_bytes",
            "512 is below the minimum of 1KiB",
        ),
        ("server.max_body", "invalid size"),
        ("server.header_timeout", "must be greater than 0s"),
        ("server.max_concurrency", "-1 is below the minimum of 0"),
        ("initializer.path", "must start with '/'"),
        ("initializer.on_failure", "\"panic\" is not one of"),
        ("shutdown.stop_signal", "SIGKILL cannot be caught"),
        ("shutdown.kill_group", "expected true or false"),
        ("async.max_concurrency", "below the minimum of 1"),
        ("async.max_queued", "below the minimum of 1"),
        ("log.format", "\"xml\" is not one of \"text\", \"json\""),
    ];
    for (key, reason) in expected {
        assert_problem(&p, &file, key, reason);
    }
    assert_eq!(p.len(), expected.len(), "{p:#?}");
}

#[test]
fn initializer_timeout_above_300s_is_refused() {
    let s = with_file("[initializer]\ntimeout = \"400s\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].to_string(),
        format!("{file}: initializer.timeout: 400s exceeds the maximum of 300s")
    );
    assert!(ok(&with_file("[initializer]\ntimeout = \"5m\"\n"))
        .initializer
        .is_some());
}

#[test]
fn busy_poll_takes_zero_and_at_most_1ms() {
    let s = with_file("[server]\nbusy_poll = \"2ms\"\n");
    let file = file_of(&s);
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].to_string(),
        format!("{file}: server.busy_poll: 2ms exceeds the maximum of 1ms")
    );
    let zero = ok(&with_file("[server]\nbusy_poll = \"0s\"\n"));
    assert_eq!(zero.server.busy_poll, Duration::ZERO);
    let most = ok(&with_file("[server]\nbusy_poll = \"1ms\"\n"));
    assert_eq!(most.server.busy_poll, Duration::from_millis(1));
}

#[test]
fn stop_signal_must_be_catchable_and_reads_every_form() {
    for (text, signal) in [
        ("\"SIGQUIT\"", Signal::SIGQUIT),
        ("\"int\"", Signal::SIGINT),
        ("\"15\"", Signal::SIGTERM),
        ("10", Signal::SIGUSR1),
    ] {
        let c = ok(&with_file(&format!("[shutdown]\nstop_signal = {text}\n")));
        assert_eq!(c.shutdown.stop_signal, signal, "{text}");
    }
    for bad in ["\"SIGSTOP\"", "9", "\"SIGNOPE\""] {
        problems(&with_file(&format!("[shutdown]\nstop_signal = {bad}\n")));
    }
}

#[test]
fn backoff_max_below_backoff_is_a_problem() {
    let s = with_file("[initializer]\nbackoff = \"2s\"\nbackoff_max = \"1s\"\n");
    let file = file_of(&s);
    assert_problem(
        &problems(&s),
        &file,
        "initializer.backoff_max",
        "backoff_max (1s) is less than backoff (2s)",
    );
    // Only backoff set, above the default backoff_max: blame backoff.
    let s = with_file("[initializer]\nbackoff = \"1m\"\n");
    assert_problem(
        &problems(&s),
        &file_of(&s),
        "initializer.backoff",
        "less than",
    );
}

#[test]
fn problems_from_file_environment_and_command_line_are_reported_together() {
    let mut s = with_file("[function]\ntimeout = \"forever\"\nbogus = 1\n");
    let file = file_of(&s);
    s.env = env(&[
        ("FC_INIT_SERVER_MAX_QUEUE", "many"),
        ("FC_INIT_LOG_COLOUR", "yes"),
    ]);
    s.listen = Some("not an address".into());
    let e = load_test(&s).expect_err("four problems");
    let p = &e.problems;
    assert_problem(p, &file, "function.timeout", "invalid duration");
    assert_problem(p, &file, "function.bogus", "unknown key");
    assert_problem(
        p,
        "environment (FC_INIT_SERVER_MAX_QUEUE)",
        "server.max_queue",
        "expected an integer",
    );
    assert_problem(
        p,
        "environment (FC_INIT_LOG_COLOUR)",
        "log.colour",
        "unknown key",
    );
    assert_problem(p, "command line (--listen)", "server.listen", "IP:PORT");
    assert_eq!(p.len(), 5);
    // Display: one line per problem, in the documented form.
    let text = e.to_string();
    assert_eq!(text.lines().count(), 5);
    assert!(text.contains(&format!("{file}: function.bogus: unknown key")));
}

#[test]
fn a_syntax_error_after_multibyte_text_counts_characters() {
    // The column is counted on bytes up to the parser's offset (never by slicing the text
    // there, which need not be a character boundary) and reported in characters.
    let e = load::from_str("[function]\nname = \"\u{e9}\u{20ac}\" x\n", &sources())
        .expect_err("trailing garbage after a value");
    let reason = &e.problems[0].reason;
    assert!(reason.contains("line 2, column 13"), "{reason}");
    for text in [
        "\u{e9}",
        "a = \"\u{20ac}",
        "[\u{e9}\u{e9}]\nx=\u{e9}",
        "\u{feff}\u{0}",
    ] {
        assert!(load::from_str(text, &sources()).is_err(), "{text:?}");
    }
}

#[test]
fn a_control_character_in_the_program_name_made_a_printed_config_that_does_not_load() {
    // Found by the config fuzz target: the default function name was the program's file name
    // as it was, so `fc-init config` printed a `name` that `name` itself refuses.
    let text = "[function]\ncommand = [\"pyth\\tn3\", \"app.py\"]\n";
    let c = load::from_str(text, &sources()).expect("a program name may hold a tab");
    assert_eq!(c.function.name, "");
    let printed = c.to_toml();
    let again = load::from_str(&printed, &sources())
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
    assert_eq!(again.to_toml(), printed);
}
