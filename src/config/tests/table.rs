//! Tests of the key table (`keys`): each entry is whole, each fixed default is a value its
//! key takes, and the documents say what the table says — the reference's tables of §3 are the
//! ones it writes, and the sample file shows each fixed default.

use super::*;
use crate::config::keys::KeyDefault;

#[test]
fn every_section_has_keys_and_every_key_its_section_s_name() {
    let mut seen = BTreeSet::new();
    for section in keys::SECTIONS {
        assert!(!section.keys.is_empty(), "[{}] has no keys", section.name);
        for k in section.keys {
            assert_eq!(k.section, section.name, "{}.{}", k.section, k.key);
            assert!(
                seen.insert((k.section, k.key)),
                "{}.{} twice",
                k.section,
                k.key
            );
            assert!(
                !k.ty.is_empty() && !k.doc.is_empty(),
                "{}.{} has no words for the reference",
                k.section,
                k.key
            );
        }
    }
}

#[test]
fn every_fixed_default_is_a_value_its_key_takes() {
    for k in keys::all() {
        if let Some(value) = k.default_value() {
            assert!(
                value.is_ok(),
                "{}.{}: default {:?}: {value:?}",
                k.section,
                k.key,
                k.default
            );
        }
    }
}

/// With `FC_INIT_WRITE_REFERENCE=1` in the environment, the test writes the key table's
/// tables into docs/reference.md instead of comparing them (after a key is added or changed).
#[test]
fn the_reference_holds_the_key_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let mut reference = std::fs::read_to_string(&path).expect("docs/reference.md is readable");
    let write = std::env::var_os("FC_INIT_WRITE_REFERENCE").is_some_and(|v| v == "1");
    for (section, table) in crate::config::reference_tables() {
        let heading = format!("### `[{section}]`");
        let start = reference
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/reference.md has no heading {heading}"));
        // The first table after the heading.
        let after = &reference[start..];
        let table_start = after
            .find("\n|")
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no table under {heading}"));
        let documented: String = after[table_start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        if write {
            let at = start + table_start;
            reference.replace_range(at..at + documented.len(), &table);
            continue;
        }
        assert!(
            documented == table,
            "docs/reference.md's table of [{section}] is not the key table's \
             (src/config/keys/; FC_INIT_WRITE_REFERENCE=1 writes it); the key table writes:\n\
             {table}\nthe reference has:\n{documented}"
        );
    }
    if write {
        std::fs::write(&path, reference).expect("docs/reference.md is writable");
    }
}

#[test]
fn the_sample_config_shows_each_fixed_default() {
    // Every `key = value` line of the sample, commented out or not, of a key with a fixed
    // default holds that default.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fc-init.toml"))
            .expect("config/fc-init.toml is readable");
    let mut section = String::new();
    let mut checked = 0;
    for line in text.lines() {
        let bare = line.strip_prefix("# ").unwrap_or(line);
        if let Some(name) = bare.strip_prefix('[').and_then(|r| r.split_once(']')) {
            section = name.0.to_owned();
            continue;
        }
        let Some((key, value)) = bare.split_once(" = ") else {
            continue;
        };
        let Some(k) = keys::find(&section, key) else {
            continue;
        };
        let Some(default) = k.default_value() else {
            continue;
        };
        let table: toml::Table =
            toml::from_str(&format!("v = {value}")).expect("the sample's values are TOML");
        let shown = crate::config::schema::convert(k.kind, &table["v"]);
        assert_eq!(
            shown, default,
            "config/fc-init.toml: {section}.{key} = {value}, but its default is {:?}",
            k.default
        );
        checked += 1;
    }
    let fixed = keys::all().filter(|k| k.default_value().is_some()).count();
    assert_eq!(
        checked, fixed,
        "config/fc-init.toml does not show every key with a fixed default"
    );
}

#[test]
fn a_default_cell_is_the_value_in_backticks_or_the_words() {
    assert_eq!(keys::KeyDefault::Is("30s").value(), Some("30s"));
    assert_eq!(KeyDefault::Depends("unset").value(), None);
    let table = keys::reference_table(keys::section("shutdown").expect("a section"));
    assert!(
        table.contains("| `shutdown.grace_period` | duration | `10s` | "),
        "{table}"
    );
}
