//! The user reference (docs/reference.md) and the README kept in step with the code: every
//! configuration key, error type (with its statuses), exit status and metric the code defines
//! has its row in the reference, and the links between the documents lead somewhere.

use std::path::Path;

use fc_init::http::fc_error::{ErrorType, Invocation};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn reference() -> String {
    read("docs/reference.md")
}

/// The text of the section whose heading starts with `heading` (e.g. "## 6."), up to the next
/// heading of the same level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("no section {heading:?} in the reference"));
    let body = &text[start + 1..];
    let level = heading.split(' ').next().unwrap();
    let end = body[1..]
        .find(&format!("\n{level} "))
        .map_or(body.len(), |i| i + 1);
    &body[..end]
}

/// The cells of every table row in `text` (header and separator rows included).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            // `\|` inside a cell is an escaped bar, not a column.
            let l = l.replace("\\|", "\u{0}");
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('\u{0}', "|"))
                .collect()
        })
        .collect()
}

/// The row of `table_text` whose first cell is `first` (backticks included).
fn row_for(table_text: &str, first: &str) -> Option<Vec<String>> {
    rows(table_text).into_iter().find(|r| r[0] == first)
}

#[test]
fn every_config_key_has_its_row_in_the_reference() {
    let text = reference();
    let config = section(&text, "## 3.");
    let mut missing = Vec::new();
    for (section, key) in fc_init::config::keys() {
        let name = format!("`{section}.{key}`");
        match row_for(config, &name) {
            // key | type | default | meaning
            Some(r) if r.len() == 4 && r.iter().all(|c| !c.is_empty()) => {}
            Some(r) => panic!("the row of {name} is not `key | type | default | meaning`: {r:?}"),
            None => missing.push(name),
        }
    }
    assert!(
        missing.is_empty(),
        "config keys without a row in docs/reference.md section 3: {missing:?}"
    );
    assert!(
        fc_init::config::keys().count() > 40,
        "the schema lost its keys"
    );
}

#[test]
fn every_error_type_has_its_row_with_both_statuses() {
    let text = reference();
    let errors = section(&text, "## 6.");
    for e in ErrorType::ALL {
        let name = format!("`{}`", e.as_str());
        let r = row_for(errors, &name)
            .unwrap_or_else(|| panic!("{name} has no row in the reference's error table"));
        // type | when | POST /invoke | HTTP
        assert_eq!(r.len(), 4, "{r:?}");
        for (cell, invocation) in [(&r[2], Invocation::Event), (&r[3], Invocation::Http)] {
            let status = e.status(invocation).to_string();
            assert!(
                cell.split('/').any(|s| s.trim() == status),
                "{name}: the reference says {cell:?} for {invocation:?}, the code answers {status}"
            );
        }
    }
}

#[test]
fn every_exit_status_has_its_row_in_the_exit_table() {
    let text = reference();
    let exits = section(&text, "## 9.");
    let firsts: Vec<String> = rows(exits)
        .into_iter()
        .map(|r| r[0].trim_matches('`').to_owned())
        .collect();
    for (code, meaning) in fc_init::exit::TABLE {
        let code = code.to_string();
        // `128+N` documents the signal base.
        let found = firsts.iter().any(|f| {
            f == &code
                || f.strip_prefix(code.as_str())
                    .is_some_and(|r| r.starts_with('+'))
        });
        assert!(
            found,
            "exit status {code} ({meaning}) has no row in section 9"
        );
    }
}

#[test]
fn every_metric_has_its_row_in_the_reference() {
    let metrics = fc_init::metrics::Metrics::default();
    let status = fc_init::state::Shared::default().snapshot();
    let text = metrics.render(&fc_init::metrics::Snapshot {
        status: &status,
        in_flight: 0,
        async_events: Some(Vec::new()),
    });
    let reference = reference();
    let admin = section(&reference, "## 11.");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(names.len() >= 7, "{text}");
    for name in names {
        assert!(
            row_for(admin, &format!("`{name}`")).is_some(),
            "metric {name} has no row in the reference's metrics table"
        );
    }
}

#[test]
fn the_readme_links_the_reference_and_the_links_lead_somewhere() {
    let readme = read("README.md");
    assert!(
        readme.contains("(docs/reference.md)"),
        "README.md does not link docs/reference.md"
    );
    let reference = reference();
    for (doc, text, base) in [
        ("README.md", &readme, ""),
        ("docs/reference.md", &reference, "docs/"),
    ] {
        assert!(
            !text.contains("CONTRACT.md"),
            "{doc} points at CONTRACT.md, which is not in the repository"
        );
        // Relative links: `](path)` or `](path#anchor)`.
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap().split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(base)
                .join(target);
            assert!(
                path.exists(),
                "{doc} links {target:?}, which does not exist"
            );
        }
    }
}
