//! What a request is (docs/reference.md §4): an event invocation, an HTTP invocation, or — under FC's own
//! platform only — one of FC's lifecycle calls. One pure function, driven by a matrix test.
//!
//! The rule: under `server.platform = "fc"` the incoming `x-fc-control-path` decides, whatever
//! the method and path (`/invoke` event, `/http-invoke` HTTP, `/initialize` and `/pre-stop`
//! FC's lifecycle calls); without one (or with another value) the plain rule applies:
//! `POST /invoke` is an event invocation, anything else an HTTP invocation. Under `none` the
//! incoming control path is ignored (and replaced on the way to the function), so no client
//! can trigger a hook.

use crate::config::Platform;
use crate::http::fc_error::Invocation;
use crate::supervisor::LifecycleCall;

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An invocation, forwarded to the function.
    Invoke(Invocation),
    /// FC's `/initialize` or `/pre-stop`, served by fc-init's own lifecycle: not an
    /// invocation (no FC Invoke lines, no concurrency slot, never asynchronous).
    Lifecycle(LifecycleCall),
}

/// The kind of a request with `method` and `path` (no query) and the incoming
/// `x-fc-control-path` value, if any.
pub fn kind(platform: Platform, method: &str, path: &str, control_path: Option<&[u8]>) -> Kind {
    if platform == Platform::Fc {
        match control_path.map(<[u8]>::trim_ascii) {
            Some(b"/invoke") => return Kind::Invoke(Invocation::Event),
            Some(b"/http-invoke") => return Kind::Invoke(Invocation::Http),
            Some(b"/initialize") => return Kind::Lifecycle(LifecycleCall::Initialize),
            Some(b"/pre-stop") => return Kind::Lifecycle(LifecycleCall::PreStop),
            _ => {}
        }
    }
    if method == "POST" && path == "/invoke" {
        Kind::Invoke(Invocation::Event)
    } else {
        Kind::Invoke(Invocation::Http)
    }
}

/// The `x-fc-control-path` the function receives for an invocation.
pub fn control_path(invocation: Invocation) -> &'static str {
    match invocation {
        Invocation::Event => "/invoke",
        Invocation::Http => "/http-invoke",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Invocation::{Event, Http};
    use LifecycleCall::{Initialize, PreStop};

    const EV: Kind = Kind::Invoke(Event);
    const HTTP: Kind = Kind::Invoke(Http);
    const INIT: Kind = Kind::Lifecycle(Initialize);
    const STOP: Kind = Kind::Lifecycle(PreStop);

    #[test]
    fn the_kind_matrix() {
        use Platform::{Fc, None as Plain};
        // platform, method, path, control path, kind
        let cases: &[(Platform, &str, &str, Option<&str>, Kind)] = &[
            // Without a control path, the plain rule, on either platform.
            (Fc, "POST", "/invoke", None, EV),
            (Fc, "GET", "/invoke", None, HTTP),
            (Fc, "POST", "/other", None, HTTP),
            (Plain, "POST", "/invoke", None, EV),
            (Plain, "PUT", "/invoke", None, HTTP),
            (Plain, "GET", "/", None, HTTP),
            // Under FC the control path decides, whatever the method and path.
            (Fc, "GET", "/anything", Some("/invoke"), EV),
            (Fc, "POST", "/invoke", Some("/http-invoke"), HTTP),
            (Fc, "POST", "/initialize", Some("/initialize"), INIT),
            (Fc, "GET", "/whatever", Some("/initialize"), INIT),
            (Fc, "GET", "/pre-stop", Some("/pre-stop"), STOP),
            (Fc, "POST", "/x", Some(" /pre-stop "), STOP),
            // An unknown control path falls back to the plain rule.
            (Fc, "POST", "/invoke", Some("/forged"), EV),
            (Fc, "GET", "/initialize", Some("/forged"), HTTP),
            // Paths alone never make a lifecycle call.
            (Fc, "POST", "/initialize", None, HTTP),
            (Fc, "GET", "/pre-stop", None, HTTP),
            // Under `none` a client's control path is ignored: no hook can be triggered.
            (Plain, "POST", "/initialize", Some("/initialize"), HTTP),
            (Plain, "GET", "/pre-stop", Some("/pre-stop"), HTTP),
            (Plain, "GET", "/x", Some("/invoke"), HTTP),
            (Plain, "POST", "/invoke", Some("/http-invoke"), EV),
        ];
        for (platform, method, path, cp, want) in cases {
            let got = kind(*platform, method, path, cp.map(str::as_bytes));
            assert_eq!(got, *want, "{platform:?} {method} {path} {cp:?}");
        }
    }

    #[test]
    fn control_paths_sent_to_the_function() {
        assert_eq!(control_path(Event), "/invoke");
        assert_eq!(control_path(Http), "/http-invoke");
    }
}
