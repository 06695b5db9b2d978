//! What the operator may ask of the asynchronous events — list, get, terminate, counts and the
//! store's status — as typed answers. The service implements it; the admin API turns the
//! answers into HTTP statuses and JSON bodies. It lives with the events so that the events
//! never import the admin API (which imports them).

use super::backend::BackendStatus;
use super::error::StoreError;
use super::model::StoredAnswer;
use super::model::{Event, ListQuery};

/// The asynchronous-event operations the admin API exposes.
pub trait AsyncEvents: Send + Sync {
    /// `GET /async-events?...`: the page and the total.
    fn list(&self, q: &ListQuery) -> Result<(u64, Vec<Event>), StoreError>;
    /// `GET /async-events/{id}`.
    fn get(&self, id: &str) -> Result<Option<Event>, StoreError>;
    /// `POST /async-events/{id}/terminate`; answers once the event has ended.
    fn terminate(&self, id: &str, grace: bool) -> Terminated;
    /// Stored events per status, for the metrics.
    fn counts(&self) -> Vec<(&'static str, u64)>;
    /// The store's part of `GET /status`.
    fn status(&self) -> BackendStatus;
    /// Whether `list` honours every filter of docs/reference.md §10 (the Redis backend does
    /// not yet: only those of section 7).
    fn lists_every_filter(&self) -> bool;
    /// `GET /async-events/{id}/result?wait=`: waits up to `wait` for the event to end.
    fn result(&self, id: &str, wait: std::time::Duration) -> Result<ResultAnswer, StoreError>;
    /// Destination deliveries by result (`delivered`, `retried`, `failed`), for the metrics.
    fn deliveries(&self) -> Vec<(&'static str, u64)>;
}

/// The answer to an operator's terminate, for the admin API to turn into HTTP.
#[derive(Debug)]
pub enum Terminated {
    /// The event has ended (ABORTED, or whatever it reached meanwhile): 200 with it.
    Ended(Event),
    NotFound,
    /// It had ended before: 409 `EventAlreadyEnded`.
    AlreadyEnded(Event),
    /// It did not end within the wait.
    TimedOut,
    Failed(StoreError),
}

/// The answer to `GET /async-events/{id}/result` (docs/reference.md §10).
#[derive(Debug)]
pub enum ResultAnswer {
    /// 404 `EventNotFound`.
    NotFound,
    /// Not ended (within the wait): 202 with the event.
    NotEnded(Event),
    /// Ended without a stored answer: 404 `ResultNotFound`.
    NoAnswer(Event),
    /// The function's answer.
    Answer(Event, StoredAnswer),
}
