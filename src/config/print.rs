//! Printing the effective configuration as TOML (`--check-config`): every key with its value,
//! defaults included, in the key table's order, as a file that `load` reads back to an equal
//! `Config`. Options that are not set are printed as comments, so the output stays valid.

use super::keys::SECTIONS;
use super::show::Shown;
use super::Config;

pub(super) fn to_toml(c: &Config) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line("# fc-init effective configuration: every key after the file, the environment and");
    line("# the command line are merged. Options that are not set appear as comments.");
    for section in SECTIONS {
        line("");
        if !(section.present)(c) {
            // A hook section that is not configured: printing the header would configure it.
            line(&format!("# [{}]  (not configured)", section.name));
            continue;
        }
        line(&format!("[{}]", section.name));
        for k in section.keys {
            line(&match (k.show)(c) {
                Shown::Set(value) => format!("{} = {value}", k.key),
                Shown::Noted(value, note) => format!("{} = {value}  # {note}", k.key),
                Shown::Unset { example, why } => format!("# {} = {example}  ({why})", k.key),
            });
        }
        for comment in (section.footer)(c) {
            line(&comment);
        }
    }
    out
}
