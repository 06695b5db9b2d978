//! Lifecycle hooks: Initializer and PreStop, HTTP and command hooks, NOTIFY_SOCKET.
