//! The source tree's shape, checked: no two files of `src/` import each other through a
//! circle (a module is read and changed as one room, not as half of several), and no file of
//! code grows past 800 lines, tests included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`proxy::conn`; `proxy` for `proxy/mod.rs`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// A test module's text is left out (tests may reach anywhere), and so are comments (a doc
/// link is no import).
fn code_of(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::a::b`, `super::a`, `self::a`, with `use` groups' first
/// segment (`use super::{a, b}` names `super::a` and `super::b`).
fn named_paths(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for head in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(head) {
            let start = from + i;
            from = start + head.len();
            let before_ok = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            if !before_ok || !text[from..].starts_with("::") {
                continue;
            }
            let rest = &text[from + 2..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let segs: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .take_while(|s| {
                            !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
                        })
                        .collect();
                    out.push((head.to_string(), segs));
                }
            } else {
                let segs: Vec<String> = rest
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                out.push((head.to_string(), segs));
            }
        }
    }
    out
}

#[test]
fn no_import_circle_among_the_files_of_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let is_dir_module = matches!(
            file.file_stem().and_then(|s| s.to_str()),
            Some("mod" | "lib" | "main")
        );
        // Where `self::` and `super::` start from.
        let own = module.clone();
        let parent = if is_dir_module || module.is_empty() {
            own.iter()
                .take(own.len().saturating_sub(1))
                .cloned()
                .collect::<Vec<_>>()
        } else {
            own[..own.len() - 1].to_vec()
        };
        for (head, segs) in named_paths(&code_of(&text)) {
            let base = match head.as_str() {
                "crate" => Vec::new(),
                "self" => own.clone(),
                _ => parent.clone(),
            };
            let full: Vec<String> = base.into_iter().chain(segs).collect();
            // The longest prefix that is a file of its own.
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|m| modules.contains_key(m));
            if let Some(target) = target {
                // A module's own children and its ancestors are its room, not a neighbour.
                if target != *module && !module.starts_with(&target) && !target.starts_with(module)
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    // A circle is a module that reaches itself.
    let mut circles = BTreeSet::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<String>> = edges[start].iter().cloned().collect();
        while let Some(m) = stack.pop() {
            if m == *start {
                circles.insert(start.join("::"));
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(edges.get(&m).into_iter().flatten().cloned());
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files of src/ in an import circle: {circles:?}"
    );
}

#[test]
fn no_file_of_code_in_src_is_over_800_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "tests"))
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let n = text.lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:?}");
}

/// Comments cite the project's own reference, never a contract document that is not in the
/// repository.
#[test]
fn comments_cite_the_reference_not_a_missing_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "fuzz/fuzz_targets", "bench"] {
        rust_files(&root.join(dir), &mut files);
    }
    let citing: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests/it/layout.rs") && !f.ends_with("tests/it/docs.rs"))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("CONTRACT"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        citing.is_empty(),
        "cite docs/reference.md instead: {citing:?}"
    );
}

/// Tests are code too: no file of `src/` or `tests/`, test modules included, grows past 800
/// lines, so that a test file is read by concern as the code it tests is.
#[test]
fn no_file_of_src_or_tests_is_over_800_lines_tests_included() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:?}");
}
