//! Traffic forwarding: the listener, limits, errors and the FC Invoke lines.
