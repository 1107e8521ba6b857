//! The state shared by both listeners and the test-facing API.
//!
//! Plain std mutexes: no lock is held across an await, and the test-facing
//! seeding API is synchronous.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use crate::auth::TokenStore;
use crate::config::Config;
use crate::faults::Faults;
use crate::log::RequestLog;
use crate::storage::Storage;
use crate::uploads::Uploads;

pub(crate) struct Shared {
    pub config: Config,
    pub storage: Mutex<Storage>,
    pub uploads: Mutex<Uploads>,
    pub tokens: Mutex<TokenStore>,
    pub faults: Mutex<Faults>,
    pub log: RequestLog,
    pub redirect_log: RequestLog,
    /// Pull requests seen so far, for `Config::rate_limit_every`.
    pub pulls: AtomicUsize,
    /// The redirect target listener, when `redirect_blob_gets` is on.
    pub redirect_addr: Option<SocketAddr>,
}

impl Shared {
    pub(crate) fn new(config: Config, redirect_addr: Option<SocketAddr>) -> Shared {
        Shared {
            config,
            storage: Mutex::default(),
            uploads: Mutex::default(),
            tokens: Mutex::default(),
            faults: Mutex::default(),
            log: RequestLog::default(),
            redirect_log: RequestLog::default(),
            pulls: AtomicUsize::new(0),
            redirect_addr,
        }
    }
}
