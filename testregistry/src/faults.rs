//! Fault injection: rules that make chosen requests fail in chosen ways.
//!
//! Every rule counts the requests it matches on its own, so "the 2nd PATCH"
//! means the same thing however many other rules exist. Rules apply to both
//! listeners (main and redirect target) and to `/token`.
//!
//! The rules, their matching ([`Faults`]) and what each action does to an
//! answer ([`FaultAction::status_body`], [`FaultAction::cut`],
//! [`FaultAction::corrupt`]) are public so that something else serving HTTP
//! (regbuild's tests put a fault-injecting proxy in front of the real
//! distribution registry) injects faults by the same rules.

use std::time::Duration;

use crate::reply::code_for_status;

/// What happens to a request a rule fires on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this status without executing the request. `body: None` gives a
    /// JSON error body whose code fits the status (e.g. 429 TOOMANYREQUESTS).
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Option<(String, Vec<u8>)>,
    },
    /// Execute the request, send the headers (announcing the full length) and
    /// the first half of the body, then drop the connection ([`FaultAction::cut`]).
    /// With an empty body the connection is dropped right after the headers;
    /// an answer to HEAD, which has no body, is not sent at all.
    CloseMidBody,
    /// Read the request, do not execute it, drop the connection without any
    /// response (logged with status 0).
    CloseBeforeResponse,
    /// Wait, then serve normally.
    Delay(Duration),
    /// Serve normally but flip bits in the body (headers, including
    /// `Docker-Content-Digest` and `Content-Length`, are unchanged).
    CorruptBody,
}

impl FaultAction {
    /// `Status` with no `Retry-After` and the default JSON body.
    pub fn status(status: u16) -> FaultAction {
        FaultAction::Status {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// `Status` with a `Retry-After` header.
    pub fn status_retry_after(status: u16, retry_after: &str) -> FaultAction {
        FaultAction::Status {
            status,
            retry_after: Some(retry_after.to_string()),
            body: None,
        }
    }

    /// The `Content-Type` and body a `Status` action answers with: its own
    /// `body`, else for a status of 400 and above a distribution error
    /// (`{"errors":[{"code","message","detail"}]}`) whose code fits the status
    /// (429 `TOOMANYREQUESTS`, 503 `UNAVAILABLE`, …). `None` for an empty body
    /// (a status below 400 without `body`, or another action).
    pub fn status_body(&self) -> Option<(String, Vec<u8>)> {
        match self {
            FaultAction::Status {
                body: Some(body), ..
            } => Some(body.clone()),
            FaultAction::Status { status, .. } if *status >= 400 => {
                let error = serde_json::json!({"errors": [{
                    "code": code_for_status(*status),
                    "message": "injected fault",
                    "detail": null,
                }]});
                Some((
                    "application/json".to_string(),
                    error.to_string().into_bytes(),
                ))
            }
            _ => None,
        }
    }

    /// For [`FaultAction::CloseMidBody`] and a body of `len` bytes: how many
    /// bytes are sent (the first half) and the `Content-Length` announced (the
    /// full length, at least 1 so that an empty body is visibly cut short too).
    pub fn cut(len: usize) -> (usize, usize) {
        (len / 2, len.max(1))
    }

    /// What [`FaultAction::CorruptBody`] does to a body: flips bits at the
    /// start, middle and end, so any digest check fails.
    pub fn corrupt(data: &mut [u8]) {
        let len = data.len();
        for i in [0, len / 2, len.saturating_sub(1)] {
            if let Some(b) = data.get_mut(i) {
                *b ^= 0x5a;
            }
        }
    }
}

/// Fires `action` on matching requests number `nth ..= nth + times - 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// Method to match (case-insensitive); `None` matches all.
    pub method: Option<String>,
    /// Substring of path + `?` + query, as sent; `""` matches all.
    pub path_contains: String,
    /// 1-based index of the first matching request that is faulted
    /// (0 is treated as 1).
    pub nth: usize,
    /// How many consecutive matching requests are faulted (0 is treated as 1;
    /// `usize::MAX` means from `nth` on forever).
    pub times: usize,
    pub action: FaultAction,
}

/// Accepted as the method argument of [`FaultRule::new`]: `"GET"`,
/// `String`, `Some("GET")` or `None` (any method). `""` and `"*"` mean any.
pub trait MethodFilter {
    fn into_method(self) -> Option<String>;
}

impl MethodFilter for &str {
    fn into_method(self) -> Option<String> {
        match self {
            "" | "*" => None,
            m => Some(m.to_string()),
        }
    }
}

impl MethodFilter for String {
    fn into_method(self) -> Option<String> {
        self.as_str().into_method()
    }
}

impl MethodFilter for Option<&str> {
    fn into_method(self) -> Option<String> {
        self.and_then(|m| m.into_method())
    }
}

impl FaultRule {
    /// Fires on the first matching request only (`nth = 1, times = 1`).
    pub fn new(method: impl MethodFilter, path_contains: &str, action: FaultAction) -> FaultRule {
        FaultRule {
            method: method.into_method(),
            path_contains: path_contains.to_string(),
            nth: 1,
            times: 1,
            action,
        }
    }

    /// Sets the 1-based index of the first faulted matching request.
    pub fn nth(mut self, nth: usize) -> FaultRule {
        self.nth = nth;
        self
    }

    /// Sets how many consecutive matching requests are faulted.
    pub fn times(mut self, times: usize) -> FaultRule {
        self.times = times;
        self
    }

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path_and_query.contains(&self.path_contains)
    }
}

/// Rules in the order they were added, each with its count of matching
/// requests: what [`crate::TestRegistry::add_fault`] adds to.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    rules: Vec<(FaultRule, usize)>,
}

impl Faults {
    pub fn new() -> Faults {
        Faults::default()
    }

    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push((rule, 0));
    }

    /// Removes every rule (and its count).
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Counts the request against every matching rule and returns the action
    /// of the first rule (in the order added) that fires.
    pub fn check(&mut self, method: &str, path_and_query: &str) -> Option<FaultAction> {
        let mut fired = None;
        for (rule, seen) in &mut self.rules {
            if !rule.matches(method, path_and_query) {
                continue;
            }
            *seen += 1;
            let first = rule.nth.max(1);
            let last = first.saturating_add(rule.times.max(1) - 1);
            if fired.is_none() && (first..=last).contains(seen) {
                fired = Some(rule.action.clone());
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_nth_for_times() {
        let mut f = Faults::default();
        f.add(
            FaultRule::new("PATCH", "/uploads/", FaultAction::status(500))
                .nth(2)
                .times(2),
        );
        assert!(f.check("PATCH", "/v2/a/blobs/uploads/x").is_none());
        assert!(f.check("GET", "/v2/a/blobs/uploads/x").is_none());
        assert!(f.check("patch", "/v2/a/blobs/uploads/x").is_some());
        assert!(f.check("PATCH", "/v2/a/blobs/uploads/x").is_some());
        assert!(f.check("PATCH", "/v2/a/blobs/uploads/x").is_none());
    }

    #[test]
    fn method_filter_forms() {
        let any = FaultRule::new(None, "x", FaultAction::CorruptBody);
        assert_eq!(any.method, None);
        assert_eq!(
            FaultRule::new("*", "x", FaultAction::CorruptBody).method,
            None
        );
        let get = FaultRule::new(Some("GET"), "x", FaultAction::CorruptBody);
        assert_eq!(get.method.as_deref(), Some("GET"));
        let forever = FaultRule::new("GET", "", FaultAction::CorruptBody).times(usize::MAX);
        let mut f = Faults::default();
        f.add(forever);
        assert!((0..5).all(|_| f.check("GET", "/").is_some()));
    }

    #[test]
    fn every_matching_rule_counts_and_the_first_in_window_fires() {
        let mut f = Faults::new();
        f.add(FaultRule::new("GET", "/v2/", FaultAction::status(503)).nth(2));
        f.add(FaultRule::new(None, "/v2/", FaultAction::status(500)).times(2));
        // Both count the first GET; only the second rule's window holds it.
        assert_eq!(f.check("GET", "/v2/"), Some(FaultAction::status(500)));
        // Both windows hold the second GET: the first rule added wins.
        assert_eq!(f.check("GET", "/v2/"), Some(FaultAction::status(503)));
        assert_eq!(f.check("GET", "/v2/"), None);
        f.clear();
        assert_eq!(f.check("GET", "/v2/"), None);
    }

    #[test]
    fn status_bodies() {
        let (content_type, body) = FaultAction::status_retry_after(429, "1")
            .status_body()
            .unwrap();
        assert_eq!(content_type, "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["errors"][0]["code"], "TOOMANYREQUESTS");
        assert_eq!(FaultAction::status(204).status_body(), None);
        let own = FaultAction::Status {
            status: 500,
            retry_after: None,
            body: Some(("text/plain".into(), b"boom".to_vec())),
        };
        assert_eq!(
            own.status_body(),
            Some(("text/plain".to_string(), b"boom".to_vec()))
        );
        assert_eq!(FaultAction::CorruptBody.status_body(), None);
    }

    #[test]
    fn cut_and_corrupt() {
        assert_eq!(FaultAction::cut(10), (5, 10));
        assert_eq!(FaultAction::cut(0), (0, 1));
        let mut data = vec![0u8; 5];
        FaultAction::corrupt(&mut data);
        assert_eq!(data, [0x5a, 0, 0x5a, 0, 0x5a]);
        let mut empty: [u8; 0] = [];
        FaultAction::corrupt(&mut empty);
    }
}
