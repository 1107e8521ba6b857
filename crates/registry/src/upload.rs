//! Writing blobs: cross-repository mounts with their fallbacks, and uploads from a file or
//! from another registry by the method `strategy` chooses (monolithic `PUT`, one `PATCH`,
//! or resumable chunks), falling back when a registry refuses one.
//!
//! A refusal that another method gets around (a `PATCH` refused, a chunk over a stated
//! limit, a body the closing `PUT` must not carry, a request too large) is remembered for
//! the host for the rest of the run, so it costs one request, not one per blob; the blob
//! is then sent again in a fresh session. `--no-upload-fallback` takes the first refusal as
//! final.
//!
//! Bounds: every blob has a byte budget ((retries + 1) × its size, at least its size plus
//! one chunk) that no sequence of answers, successful or not, can exceed; fallbacks are
//! bounded because each one must teach the host something new; restarts and resumes are
//! bounded by the retry policy.
//!
//! Requests bound to a session's state (its PATCH and PUT) are not retried as such: after a
//! transient failure an upload restarts in a fresh session, and a chunked upload from a
//! file asks the session how much it holds (`GET`, `Range`) and resumes from there.
//!
//! Upload Locations are opaque: a relative one is resolved against the URL that answered,
//! its query (distribution keeps a signed `_state` there) is kept, and only the newest
//! Location of a session is used.

use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::RegistryError;
use super::strategy::{self, HostQuirks, Lesson, Sent, Sizes};
use super::transport::{header_str, Body, Call, Repo, SentHook};
use regbuild_oci::digest::Digest;

/// An open upload session: where to send its bytes next.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub location: Url,
    /// `OCI-Chunk-Min-Length`: every chunk but the last must be at least this long.
    pub min_chunk: Option<u64>,
}

/// What a mount request achieved.
#[derive(Debug)]
pub enum Mounted {
    /// 201: the blob is in the repository now.
    Done,
    /// The registry did not mount; upload into this session (202's own, or a fresh one when
    /// the mount was refused with another status).
    Upload(UploadSession),
}

/// Fallbacks per blob at most (each must also teach the host something new).
const MAX_FALLBACKS: u32 = 6;

/// Why one attempt at an upload failed.
enum Failed {
    /// The registry answered `error` to `sent`: maybe a refusal another method avoids.
    Answer {
        sent: Sent,
        error: Box<RegistryError>,
    },
    /// Anything else (no answer, a local error, a budget exhausted).
    Other(Box<RegistryError>),
}

impl From<RegistryError> for Failed {
    fn from(e: RegistryError) -> Self {
        Failed::Other(Box::new(e))
    }
}

impl Failed {
    fn into_error(self) -> RegistryError {
        match self {
            Failed::Answer { error, .. } | Failed::Other(error) => *error,
        }
    }
}

/// Bytes sent for one blob, across every attempt and method.
struct Budget {
    sent: u64,
    limit: u64,
}

impl Budget {
    fn new(len: u64, attempts: u32, chunk: u64) -> Budget {
        let limit = len
            .saturating_mul(u64::from(attempts) + 1)
            .max(len.saturating_add(chunk));
        Budget { sent: 0, limit }
    }

    // `Failed` holds a `RegistryError` like every async fn here; this one is not async, so
    // clippy measures it. It is returned once per attempt: not worth a box.
    fn spend(&mut self, repo: &Repo, op: &str, bytes: u64, len: u64) -> Result<(), Failed> {
        if self.sent.saturating_add(bytes) > self.limit {
            return Err(Failed::from(repo.protocol_error(
                op,
                format!(
                    "gave up: {} bytes already sent for a blob of {len} bytes (at most {} \
                     are sent: the registry keeps losing or refusing them)",
                    self.sent, self.limit
                ),
            )));
        }
        self.sent += bytes;
        Ok(())
    }
}

/// What was tried for one blob, for the error when nothing works.
#[derive(Default)]
struct Tried(Vec<String>);

impl Tried {
    fn push(&mut self, method: &str, error: &RegistryError) {
        self.0.push(format!("{method}: {}", answer_of(error)));
    }

    /// The final error: as it is when nothing was tried before it, else naming every try.
    fn finish(self, repo: &Repo, op: &str, method: &str, last: RegistryError) -> RegistryError {
        if self.0.is_empty() {
            return last;
        }
        let mut tries = self.0;
        tries.push(format!("{method}: {}", answer_of(&last)));
        RegistryError::Refused {
            registry: repo.registry_name().to_string(),
            repository: repo.name().to_string(),
            op: op.to_string(),
            tried: tries.join("; then "),
            status: last.status(),
            code: last.code().map(str::to_string),
        }
    }
}

/// The registry's own answer in an error, without the operation prefix.
fn answer_of(error: &RegistryError) -> String {
    match error {
        RegistryError::Api {
            status,
            code,
            message,
            ..
        } => {
            let mut s = format!("HTTP {status}");
            if let Some(c) = code {
                s.push_str(&format!(" {c}"));
            }
            if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
                s.push_str(&format!(": {m}"));
            }
            s
        }
        other => other.to_string(),
    }
}

/// Where a blob's bytes come from, for as many attempts as its upload needs.
enum Source<'a> {
    File {
        path: &'a std::path::Path,
        on_sent: Option<SentHook>,
    },
    /// Another registry's repository: a fresh verified GET per attempt.
    Remote(&'a Repo),
}

impl Repo {
    /// What this repository's host is known to refuse (presets and this run's refusals).
    pub fn upload_quirks(&self) -> HostQuirks {
        match self.host.quirks.lock() {
            Ok(q) => q.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether a layer may be streamed here while it is still being packed.
    pub fn streams_unknown_length(&self) -> bool {
        strategy::streams_unknown_length(
            self.registry.options().upload_strategy,
            &self.upload_quirks(),
        )
    }

    /// Remembers what a refusal of `sent` teaches about the host; true when it taught
    /// something new (and fallbacks are on).
    pub fn learn_from(&self, sent: Sent, error: &RegistryError) -> bool {
        match refusal(sent, error) {
            Some(lesson) => self.learn(lesson, &answer_of(error)),
            None => false,
        }
    }

    /// Whether offsets must be counted from the bytes sent: the host's `Range` is known to
    /// lag, or (fallbacks on) an accepted chunk just showed that it does.
    fn range_is_stale(&self) -> bool {
        self.upload_quirks().stale_range
            || self.learn(
                Lesson::StaleRange,
                "a Range that did not advance after an accepted chunk",
            )
    }

    fn learn(&self, lesson: Lesson, why: &str) -> bool {
        if !self.registry.options().upload_fallback {
            return false;
        }
        let mut quirks = match self.host.quirks.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        let new = match lesson {
            Lesson::NoPatch => !std::mem::replace(&mut quirks.no_patch, true),
            Lesson::NoPutBody => !std::mem::replace(&mut quirks.no_put_body, true),
            Lesson::StaleRange => !std::mem::replace(&mut quirks.stale_range, true),
            Lesson::MaxChunk(n) => lower(&mut quirks.max_chunk, n),
            Lesson::MaxBody(n) => lower(&mut quirks.max_body, n),
        };
        if new {
            tracing::info!(registry = %self.host.name, "registry answered {why}: {lesson}");
            if let Ok(mut said) = self.host.refusals.lock() {
                said.push(format!("{why} ({lesson})"));
            }
        }
        new
    }

    /// `POST ?mount=<digest>&from=<repo>`. Any answer but 201/202 falls back to a plain
    /// upload session, because registries refuse mounts in many ways (401/403/404/5xx),
    /// unless fallbacks are off.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<Mounted, RegistryError> {
        let op = format!("mount blob {digest} from {from}");
        let mut url = self.url("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let (resp, answered) = self.send(Call::new(Method::POST, url, &op)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mounted::Done),
            StatusCode::ACCEPTED => Ok(Mounted::Upload(self.session_from(&op, &resp, &answered)?)),
            _ if !self.registry.options().upload_fallback => Err(self.fail(&op, resp).await),
            status => {
                tracing::info!(%digest, from, status = status.as_u16(), "mount refused; uploading");
                Ok(Mounted::Upload(self.start_upload().await?))
            }
        }
    }

    /// `POST /blobs/uploads/`: opens a session.
    pub async fn start_upload(&self) -> Result<UploadSession, RegistryError> {
        let op = "start upload";
        let (resp, answered) = self
            .send(Call::new(Method::POST, self.url("blobs/uploads/"), op))
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(self.fail(op, resp).await);
        }
        self.session_from(op, &resp, &answered)
    }

    /// Closes a session whose bytes were all PATCHed: `PUT <location>&digest=…`, no body.
    pub async fn finish_upload(
        &self,
        session: UploadSession,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let op = format!("upload blob {digest}");
        self.put(session, digest, Body::Empty, 0, &op)
            .await
            .map_err(Failed::into_error)
    }

    /// `PATCH <location>` with a body whose length is not known yet (a blob still being
    /// produced): the spec's streamed upload. Not retried (the body is consumed once); returns
    /// the session to close with `finish_upload`. `written` tells, on a refusal, how much was
    /// sent (to learn a size limit from it).
    pub async fn patch_stream(
        &self,
        session: UploadSession,
        body: reqwest::Body,
        written: impl Fn() -> u64,
    ) -> Result<UploadSession, RegistryError> {
        let op = "upload blob while it is packed";
        let body = Body::Stream {
            body: Some(body),
            len: None,
        };
        match self.patch(session, body, None, op).await {
            Ok((session, _)) => Ok(session),
            Err(Failed::Answer { error, .. }) => {
                let sent = Sent::Patch {
                    bytes: Some(written()),
                    ranged: false,
                };
                self.learn_from(sent, &error);
                Err(*error)
            }
            Err(Failed::Other(e)) => Err(*e),
        }
    }

    fn session_from(
        &self,
        op: &str,
        resp: &reqwest::Response,
        answered: &Url,
    ) -> Result<UploadSession, RegistryError> {
        let raw = header_str(resp, LOCATION)
            .ok_or_else(|| self.protocol_error(op, "upload answer has no Location"))?;
        let location = resolve_location(answered, &raw)
            .ok_or_else(|| self.protocol_error(op, "upload Location is not a valid URL"))?;
        let min_chunk = header_str(resp, "oci-chunk-min-length".parse().expect("static"))
            .and_then(|v| v.trim().parse().ok());
        Ok(UploadSession {
            location,
            min_chunk,
        })
    }

    /// Uploads a file into `first` (or a new session) by the method the strategy chooses,
    /// restarting in a fresh session after a transient failure or a refusal it learned from.
    pub async fn upload_file(
        &self,
        first: Option<UploadSession>,
        digest: &Digest,
        path: &std::path::Path,
        len: u64,
        on_sent: Option<SentHook>,
    ) -> Result<(), RegistryError> {
        let source = Source::File { path, on_sent };
        self.upload(first, digest, len, source).await
    }

    /// Copies a blob from `src` (another repository or registry) into `first` (or a new
    /// session) without holding it: GET → verify → upload, by the strategy's method. A
    /// digest mismatch aborts the upload before its last byte, so the registry never commits
    /// bad bytes; a failure restarts the GET in a fresh session.
    pub async fn copy_blob_from(
        &self,
        first: Option<UploadSession>,
        src: &Repo,
        digest: &Digest,
        len: u64,
    ) -> Result<(), RegistryError> {
        self.upload(first, digest, len, Source::Remote(src)).await
    }

    async fn upload(
        &self,
        first: Option<UploadSession>,
        digest: &Digest,
        len: u64,
        source: Source<'_>,
    ) -> Result<(), RegistryError> {
        let opts = self.registry.options().clone();
        let op = format!("upload blob {digest}");
        let mut budget = Budget::new(len, opts.retry.attempts, opts.chunk_size);
        let mut tried = Tried::default();
        let mut session = first;
        let (mut attempt, mut fallbacks) = (0u32, 0u32);
        loop {
            let s = match session.take() {
                Some(s) => s,
                None => self.start_upload().await?,
            };
            let quirks = self.upload_quirks();
            let threshold = match source {
                // A stream cannot resume mid-way: chunks buy nothing unless forced.
                Source::Remote(_) => u64::MAX,
                Source::File { .. } => opts.chunk_threshold,
            };
            let sizes = Sizes {
                threshold,
                chunk_size: opts.chunk_size,
                min_chunk: s.min_chunk,
            };
            let Some(method) = strategy::choose(opts.upload_strategy, &quirks, len, sizes) else {
                let refused = match self.host.refusals.lock() {
                    Ok(r) => r.join("; "),
                    Err(_) => String::new(),
                };
                let last = self.protocol_error(
                    &op,
                    format!(
                        "no upload method is left that this registry accepts (it answered: \
                         {refused})"
                    ),
                );
                return Err(tried.finish(self, &op, "nothing left to try", last));
            };
            let described = method.to_string();
            let result = match &source {
                Source::File { path, on_sent } => {
                    self.send_file(s, digest, path, len, on_sent.clone(), method, &mut budget)
                        .await
                }
                Source::Remote(src) => {
                    self.send_remote(s, digest, src, len, method, &mut budget)
                        .await
                }
            };
            let failed = match result {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            if let Failed::Answer { sent, error } = &failed {
                // Learned now, or by a concurrent upload since this attempt chose its method.
                let taught = self.learn_from(*sent, error) || self.upload_quirks() != quirks;
                if fallbacks < MAX_FALLBACKS && taught {
                    fallbacks += 1;
                    tried.push(&described, error);
                    continue;
                }
            }
            let error = failed.into_error();
            if !error.is_transient() {
                return Err(tried.finish(self, &op, &described, error));
            }
            attempt += 1;
            match opts.retry.next(attempt, None) {
                super::retry::Next::Wait(d) => {
                    tracing::info!(%digest, attempt, "upload failed ({error}); restarting it");
                    tokio::time::sleep(d).await;
                }
                _ => return Err(tried.finish(self, &op, &described, error)),
            }
        }
    }

    /// One attempt at sending a file by `method` into `session`.
    #[allow(clippy::too_many_arguments)]
    async fn send_file(
        &self,
        session: UploadSession,
        digest: &Digest,
        path: &std::path::Path,
        len: u64,
        on_sent: Option<SentHook>,
        method: strategy::Method,
        budget: &mut Budget,
    ) -> Result<(), Failed> {
        let op = format!("upload blob {digest} ({method})");
        let whole = || Body::File {
            path: path.to_path_buf(),
            offset: 0,
            len,
            on_sent: on_sent.clone(),
        };
        match method {
            strategy::Method::Monolithic => {
                budget.spend(self, &op, len, len)?;
                self.put(session, digest, whole(), len, &op).await
            }
            strategy::Method::Patch => {
                budget.spend(self, &op, len, len)?;
                let (session, _) = self.patch(session, whole(), Some(len), &op).await?;
                self.put(session, digest, Body::Empty, 0, &op).await
            }
            strategy::Method::Chunked { size } => {
                self.upload_chunks(session, digest, path, len, size, on_sent, budget, &op)
                    .await
            }
        }
    }

    /// One attempt at copying a blob from `src` by `method` into `session`: a verified GET
    /// streamed into one request, or split into chunks as it arrives (memory stays bounded
    /// by the stream's buffers, never a whole chunk).
    async fn send_remote(
        &self,
        session: UploadSession,
        digest: &Digest,
        src: &Repo,
        len: u64,
        method: strategy::Method,
        budget: &mut Budget,
    ) -> Result<(), Failed> {
        let op = format!("upload blob {digest} ({method})");
        let download = src.get_blob(digest, Some(len)).await?;
        let failure = download.failure_slot();
        let stream: SharedStream = Arc::new(tokio::sync::Mutex::new(Splitter {
            stream: Box::pin(download.into_stream()),
            leftover: None,
        }));
        let body = |n: u64| Body::Stream {
            body: Some(reqwest::Body::wrap_stream(take(stream.clone(), n))),
            len: Some(n),
        };
        let result = match method {
            strategy::Method::Monolithic => {
                budget.spend(self, &op, len, len)?;
                self.put(session, digest, body(len), len, &op).await
            }
            strategy::Method::Patch => {
                budget.spend(self, &op, len, len)?;
                match self.patch(session, body(len), Some(len), &op).await {
                    Ok((session, _)) => self.put(session, digest, Body::Empty, 0, &op).await,
                    Err(e) => Err(e),
                }
            }
            strategy::Method::Chunked { size } => {
                let mut session = session;
                let mut offset = 0u64;
                let mut outcome = Ok(());
                while offset < len {
                    // Non-empty, so every accepted chunk advances `offset`.
                    let end = offset.saturating_add(size.get()).min(len);
                    let n = end - offset;
                    if let Err(e) = budget.spend(self, &op, n, len) {
                        outcome = Err(e);
                        break;
                    }
                    match self.patch(session.clone(), body(n), Some(n), &op).await {
                        Ok((next, held))
                            if self.chunk_of_stream_taken(held.as_deref(), offset, end) =>
                        {
                            session = next
                        }
                        Ok(_) => {
                            outcome = Err(Failed::from(RegistryError::Transport {
                                registry: self.registry_name().to_string(),
                                repository: self.name().to_string(),
                                op: op.clone(),
                                message: "the registry's Range does not match the bytes of the \
                                          stream sent; copying again"
                                    .into(),
                            }));
                            break;
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                    offset = end;
                }
                match outcome {
                    Ok(()) => self.put(session, digest, Body::Empty, 0, &op).await,
                    Err(e) => Err(e),
                }
            }
        };
        // A broken or mismatching source explains the upload's failure better than the
        // destination's answer to a cut body.
        match result {
            Err(f) => match failure.lock().ok().and_then(|mut slot| slot.take()) {
                Some(from_source) => Err(Failed::Other(Box::new(from_source))),
                None => Err(f),
            },
            ok => ok,
        }
    }

    /// `PUT <location>&digest=…` carrying `body` (`bytes` long), closing the session.
    async fn put(
        &self,
        session: UploadSession,
        digest: &Digest,
        body: Body,
        bytes: u64,
        op: &str,
    ) -> Result<(), Failed> {
        let mut url = session.location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let call = Call::new(Method::PUT, url, op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .no_retry();
        let (resp, _) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(Failed::Answer {
                sent: Sent::Put { bytes },
                error: Box::new(self.fail(op, resp).await),
            });
        }
        Ok(())
    }

    /// `PATCH <location>` with `body` (`bytes` long when known, without `Content-Range`);
    /// the session's next Location and the `Range` the registry says it holds.
    async fn patch(
        &self,
        session: UploadSession,
        body: Body,
        bytes: Option<u64>,
        op: &str,
    ) -> Result<(UploadSession, Option<String>), Failed> {
        self.patch_call(session, body, bytes, None, op).await
    }

    async fn patch_call(
        &self,
        session: UploadSession,
        body: Body,
        bytes: Option<u64>,
        range: Option<(u64, u64)>,
        op: &str,
    ) -> Result<(UploadSession, Option<String>), Failed> {
        let mut call = Call::new(Method::PATCH, session.location.clone(), op)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .no_retry();
        if let Some((start, end)) = range {
            call = call.header(
                reqwest::header::CONTENT_RANGE,
                &format!("{start}-{}", end - 1),
            );
        }
        let (resp, answered) = self.send(call).await?;
        if !resp.status().is_success() {
            return Err(Failed::Answer {
                sent: Sent::Patch {
                    bytes,
                    ranged: range.is_some(),
                },
                error: Box::new(self.fail(op, resp).await),
            });
        }
        let held = header_str(&resp, reqwest::header::RANGE);
        let location = self
            .next_location(op, &resp, &answered)?
            .unwrap_or(session.location);
        Ok((
            UploadSession {
                location,
                min_chunk: session.min_chunk,
            },
            held,
        ))
    }

    /// PATCHes `path` in chunks with `Content-Range`, resuming from what the session holds
    /// after a failure or a plain 416, then closes the session with `PUT ?digest=`. A `Range`
    /// that does not advance after an accepted chunk is stale (ECR): the offset is then
    /// counted from the bytes sent, and the closing PUT's digest check decides.
    #[allow(clippy::too_many_arguments)]
    async fn upload_chunks(
        &self,
        mut session: UploadSession,
        digest: &Digest,
        path: &std::path::Path,
        len: u64,
        chunk: NonZeroU64,
        on_sent: Option<SentHook>,
        budget: &mut Budget,
        op: &str,
    ) -> Result<(), Failed> {
        let policy = self.registry.options().retry.clone();
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < len {
            // Non-empty, so every accepted chunk advances `offset`.
            let end = offset.saturating_add(chunk.get()).min(len);
            budget.spend(self, op, end - offset, len)?;
            let base = offset;
            let hook = on_sent.clone().map(|h| {
                let h: SentHook = Arc::new(move |n| h(base + n));
                h
            });
            let body = Body::File {
                path: path.to_path_buf(),
                offset,
                len: end - offset,
                on_sent: hook,
            };
            let outcome = self
                .patch_call(
                    session.clone(),
                    body,
                    Some(end - offset),
                    Some((offset, end)),
                    op,
                )
                .await;
            // After a failure the session is asked where it stands; after a success whose
            // `Range` is believed, that `Range` already said it.
            let mut ask_session = true;
            let last_answer = match outcome {
                Ok((next, held)) => {
                    session = next;
                    let held = held.and_then(|r| parse_range_end(&r)).map(|h| h.min(len));
                    match accepted(held, offset, end) {
                        Accepted::At(to) => {
                            offset = to;
                            continue;
                        }
                        Accepted::Mismatch(_) if self.range_is_stale() => {
                            offset = end;
                            continue;
                        }
                        // Believed: the registry says it holds no more than before.
                        Accepted::Mismatch(h) => {
                            offset = h;
                            ask_session = false;
                            "a success whose Range did not advance".to_string()
                        }
                    }
                }
                Err(Failed::Answer { sent, error }) => {
                    let status = error.status().unwrap_or(0);
                    // A refusal another method avoids goes back to `upload` to learn from.
                    if refusal(sent, &error).is_some() && self.registry.options().upload_fallback {
                        return Err(Failed::Answer { sent, error });
                    }
                    let resumable = status == 416 || error.is_transient();
                    if !resumable {
                        return Err(Failed::Answer { sent, error });
                    }
                    status.to_string()
                }
                Err(Failed::Other(e)) if e.is_transient() => "no answer".to_string(),
                Err(other) => return Err(other),
            };
            failures += 1;
            let wait = match policy.next(failures, None) {
                super::retry::Next::Wait(d) => d,
                _ => {
                    return Err(Failed::from(self.protocol_error(
                        op,
                        format!(
                            "gave up resuming after {failures} failed chunks (last answer: \
                             {last_answer})"
                        ),
                    )))
                }
            };
            tokio::time::sleep(wait).await;
            if self.upload_quirks().stale_range {
                // Its Range cannot be believed: start over in a fresh session.
                return Err(Failed::from(RegistryError::Transport {
                    registry: self.registry_name().to_string(),
                    repository: self.name().to_string(),
                    op: op.to_string(),
                    message: "a chunk failed where Range cannot be trusted".into(),
                }));
            }
            if ask_session {
                offset = self.upload_status(&mut session, op).await?.min(len);
            }
            tracing::info!(%digest, offset, "resuming chunked upload");
        }
        self.put(session, digest, Body::Empty, 0, op).await
    }

    /// `GET <location>`: how many bytes the session holds (its `Range` end + 1).
    async fn upload_status(
        &self,
        session: &mut UploadSession,
        op: &str,
    ) -> Result<u64, RegistryError> {
        let (resp, answered) = self
            .send(Call::new(Method::GET, session.location.clone(), op))
            .await?;
        if !resp.status().is_success() {
            return Err(self.fail(op, resp).await);
        }
        if let Some(next) = self.next_location(op, &resp, &answered)? {
            session.location = next;
        }
        Ok(header_str(&resp, reqwest::header::RANGE)
            .and_then(|r| parse_range_end(&r))
            .unwrap_or(0))
    }

    /// Whether a chunk of a stream (which cannot be sent again) was taken whole: the
    /// session's `Range` reaches its end, or is missing, or is stale where that is known.
    fn chunk_of_stream_taken(&self, held: Option<&str>, offset: u64, end: u64) -> bool {
        match accepted(held.and_then(parse_range_end), offset, end) {
            Accepted::At(to) => to == end,
            // More than was sent is no lag: the stream cannot be sent again to find out.
            Accepted::Mismatch(h) if h > end => false,
            Accepted::Mismatch(_) => self.range_is_stale(),
        }
    }

    fn next_location(
        &self,
        op: &str,
        resp: &reqwest::Response,
        answered: &Url,
    ) -> Result<Option<Url>, RegistryError> {
        match header_str(resp, LOCATION) {
            None => Ok(None),
            Some(raw) => resolve_location(answered, &raw)
                .map(Some)
                .ok_or_else(|| self.protocol_error(op, "upload Location is not a valid URL")),
        }
    }
}

/// What a refusal of `sent` teaches, if another method gets around it.
fn refusal(sent: Sent, error: &RegistryError) -> Option<Lesson> {
    let message = match error {
        RegistryError::Api { message, .. } => message.as_deref(),
        _ => None,
    };
    strategy::read_refusal(sent, error.status()?, error.code(), message)
}

/// Where an accepted chunk `[offset, end)` leaves an upload, by the `Range` it answered.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    /// Resume here: the chunk's end (all taken, or no `Range` said otherwise), or the
    /// spec's resume point when part of it was taken.
    At(u64),
    /// The `Range` did not advance past `offset` (or went past the chunk): stale or lost.
    Mismatch(u64),
}

fn accepted(held: Option<u64>, offset: u64, end: u64) -> Accepted {
    match held {
        None => Accepted::At(end),
        Some(h) if h == end => Accepted::At(end),
        Some(h) if h > offset && h < end => Accepted::At(h),
        Some(h) => Accepted::Mismatch(h),
    }
}

/// Lowers a limit (`None` is no limit); true when it changed.
fn lower(limit: &mut Option<u64>, to: u64) -> bool {
    match *limit {
        Some(current) if current <= to => false,
        _ => {
            *limit = Some(to);
            true
        }
    }
}

type SharedStream = Arc<tokio::sync::Mutex<Splitter>>;

/// One download consumed by several request bodies in turn (the chunks of a copy).
struct Splitter {
    stream: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    leftover: Option<Bytes>,
}

/// The next `n` bytes of `shared` as a body stream.
fn take(shared: SharedStream, n: u64) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::try_unfold((shared, n), |(shared, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        let mut s = shared.lock().await;
        let mut piece = match s.leftover.take() {
            Some(b) => b,
            None => match s.stream.next().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the source blob ended early",
                    ))
                }
            },
        };
        if piece.len() as u64 > remaining {
            s.leftover = Some(piece.split_off(remaining as usize));
        }
        drop(s);
        let left = remaining - piece.len() as u64;
        Ok(Some((piece, (shared, left))))
    })
}

/// `Range: 0-1234` (or `bytes=0-1234`) → 1235, the bytes the session holds. Distribution
/// answers `0-0` for an empty session, so `0-0` is read as nothing held.
pub fn parse_range_end(value: &str) -> Option<u64> {
    let v = value.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 || (end == 0) {
        return Some(0);
    }
    Some(end + 1)
}

/// RFC 3986 reference resolution of a Location against the URL that answered.
pub fn resolve_location(answered: &Url, location: &str) -> Option<Url> {
    answered.join(location.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_like_rfc3986() {
        let base = Url::parse("http://r:5000/v2/a/b/blobs/uploads/").unwrap();
        let abs = resolve_location(&base, "http://other:1/up/1?_state=x").unwrap();
        assert_eq!(abs.as_str(), "http://other:1/up/1?_state=x");
        let root = resolve_location(&base, "/v2/a/b/blobs/uploads/u1?_state=s").unwrap();
        assert_eq!(
            root.as_str(),
            "http://r:5000/v2/a/b/blobs/uploads/u1?_state=s"
        );
        let rel = resolve_location(&base, "u2?_state=t").unwrap();
        assert_eq!(
            rel.as_str(),
            "http://r:5000/v2/a/b/blobs/uploads/u2?_state=t"
        );
        let up = resolve_location(&base, "../uploads/u3").unwrap();
        assert_eq!(up.as_str(), "http://r:5000/v2/a/b/blobs/uploads/u3");
    }

    #[test]
    fn ranges_say_how_much_a_session_holds() {
        assert_eq!(parse_range_end("0-1023"), Some(1024));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("garbage"), None);
    }

    #[test]
    fn digest_is_appended_to_an_existing_query() {
        let mut u = Url::parse("http://r/v2/a/blobs/uploads/u?_state=abc").unwrap();
        u.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(u.query(), Some("_state=abc&digest=sha256%3A00"));
    }

    #[test]
    fn an_accepted_chunk_resumes_where_its_range_says_unless_it_did_not_advance() {
        assert_eq!(accepted(None, 0, 10), Accepted::At(10));
        assert_eq!(accepted(Some(10), 0, 10), Accepted::At(10));
        assert_eq!(accepted(Some(4), 0, 10), Accepted::At(4));
        assert_eq!(
            accepted(Some(10), 10, 20),
            Accepted::Mismatch(10),
            "ECR's stale Range"
        );
        assert_eq!(accepted(Some(25), 10, 20), Accepted::Mismatch(25));
    }

    #[test]
    fn limits_only_go_down() {
        let mut l = None;
        assert!(lower(&mut l, 10));
        assert!(!lower(&mut l, 20));
        assert!(lower(&mut l, 5));
        assert_eq!(l, Some(5));
    }

    #[tokio::test]
    async fn a_split_stream_gives_each_body_exactly_its_bytes() {
        let pieces: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"abcde")),
            Ok(Bytes::from_static(b"fg")),
            Ok(Bytes::from_static(b"hijkl")),
        ];
        let shared: SharedStream = Arc::new(tokio::sync::Mutex::new(Splitter {
            stream: Box::pin(futures::stream::iter(pieces)),
            leftover: None,
        }));
        let mut out = Vec::new();
        for n in [3u64, 6, 3] {
            let part: Vec<Bytes> = take(shared.clone(), n).map(|r| r.unwrap()).collect().await;
            out.push(part.concat());
        }
        assert_eq!(
            out,
            vec![b"abc".to_vec(), b"defghi".to_vec(), b"jkl".to_vec()]
        );
        let rest: Vec<_> = take(shared.clone(), 1).collect().await;
        assert!(rest[0].is_err(), "reading past the end is an error");
    }
}
