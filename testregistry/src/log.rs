//! The request log tests read to count and inspect what a client sent.

use std::sync::Mutex;

use crate::util::lock;

/// One request as the registry saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path plus `?query` when there is one, exactly as sent.
    pub path: String,
    /// Status answered; 0 while the request is in flight or when the
    /// connection was dropped without a response (fault injection).
    pub status: u16,
    pub bytes_received: u64,
    /// Raw `Authorization` header value.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub content_range: Option<String>,
}

/// Entries keep arrival order; the answer is filled in when it is known, which
/// is always before the client sees it.
#[derive(Default)]
pub(crate) struct RequestLog {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    items: Vec<(u64, LoggedRequest)>,
}

impl RequestLog {
    /// Records an arriving request and returns a handle for [`Self::finish`].
    pub(crate) fn start(&self, entry: LoggedRequest) -> u64 {
        let mut e = lock(&self.inner);
        let id = e.next_id;
        e.next_id += 1;
        e.items.push((id, entry));
        id
    }

    /// Fills in the outcome; a no-op when the log was cleared meanwhile.
    pub(crate) fn finish(&self, id: u64, status: u16, bytes_received: u64) {
        let mut e = lock(&self.inner);
        if let Some((_, entry)) = e.items.iter_mut().rev().find(|(i, _)| *i == id) {
            entry.status = status;
            entry.bytes_received = bytes_received;
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<LoggedRequest> {
        lock(&self.inner)
            .items
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.inner).items.clear();
    }
}
