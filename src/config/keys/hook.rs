//! The lines of a hook's `path` and `command`, shared by `[initializer]` and `[pre_stop]`:
//! the one the hook uses is set, the other a comment.

use crate::config::show::{list, quote, set, unset, Shown};
use crate::config::HookAction;

/// What a key of a section that is not configured shows; never printed, since `print`
/// leaves such a section out.
pub(super) const NOT_CONFIGURED: &str = "the section is not configured";

pub(super) fn hook_path(action: Option<&HookAction>) -> Shown {
    match action {
        Some(HookAction::Http { path }) => set(quote(path)),
        Some(HookAction::Command(_)) => unset("\"\"", "not set: the hook runs command"),
        None => unset("", NOT_CONFIGURED),
    }
}

pub(super) fn hook_command(action: Option<&HookAction>) -> Shown {
    match action {
        Some(HookAction::Http { .. }) => {
            unset("[]", "not set: the hook is an HTTP request to path")
        }
        Some(HookAction::Command(command)) => set(list(command)),
        None => unset("", NOT_CONFIGURED),
    }
}
