//! Docker Hub's pull rate limit: with `Config::rate_limit_every = Some(n)`,
//! pull requests number n, 2n, 3n, … (manifest and blob `GET`s, counted
//! together from 1) answer 429 the way Docker Hub does
//! (docs.docker.com/docker-hub/usage/pulls).

use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::reply::{error, Reply};
use crate::state::Shared;

/// Counts one pull; the 429 to answer when it is over the limit.
pub(crate) fn check_pull(shared: &Shared) -> Option<Reply> {
    let every = shared.config.rate_limit_every.filter(|n| *n > 0)?;
    let seen = shared.pulls.fetch_add(1, Ordering::SeqCst) + 1;
    (seen % every == 0).then(|| {
        error(
            429,
            "TOOMANYREQUESTS",
            "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading",
            Value::Null,
        )
        .header("ratelimit-limit", "100;w=21600")
        .header("ratelimit-remaining", "0")
        .header("Retry-After", "1")
    })
}
