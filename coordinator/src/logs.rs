//! Reading and following log streams: a deployment's build and deploy log
//! (`berth:logs:<deployment>`) and an app's runtime log (`berth:applogs:<app>`, every replica on
//! every node, merged by arrival).
//!
//! Nodes write the lines straight into Redis; this module only reads. A follow is a stream of
//! [`Followed`] items: it reads what is there after its last id with a non-blocking `XREAD` on the
//! shared connection, then takes the batches of the [`LogHub`], whose one `XREAD BLOCK` reader
//! per stream hands every entry to every follower of that stream — so a line reaches its
//! followers as soon as Redis has it, with no polling interval on the line path and one blocking
//! connection per followed stream rather than per follower. A follow reads Redis again only
//! after a gap in the batches or 500 ms of quiet. A deployment follow ends after the
//! deployment turns terminal: the `Ledger` writes the closing line before the terminal record, so
//! once the follower sees the terminal status it drains what is left and sends
//! [`Followed::End`]. An app follow runs until the client goes away (dropping the stream drops its
//! subscription; the stream's reader stops with its last follower). Every follow ends (without
//! an `End`) when the process's shutdown starts; a client resumes it elsewhere or later with its
//! last id.

use std::collections::VecDeque;
use std::time::Duration;

use berth_bus::Shutdown;
use berth_protocol::{keys, now_ms, DeploymentStatus, LogEntry, LogLine, LogStream};
use futures_util::Stream;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::error::{Error, Result};
use crate::log_hub::{self, Batch, LogHub, News};
use crate::store::Store;
use berth_protocol::stream_id_order;
use tokio::sync::broadcast;

/// Longest wait for news; between two, a follow reads anyway and a deployment follow checks the
/// status.
const BLOCK: Duration = log_hub::BLOCK;
/// Most entries read at once.
const READ_COUNT: usize = 1000;
/// Largest `tail` an app log read accepts (the stream keeps about [`keys::APP_LOG_MAXLEN`]).
pub const MAX_TAIL: usize = keys::APP_LOG_MAXLEN;
/// Lines an app log read returns when the request names neither `tail` nor `since`.
pub const DEFAULT_TAIL: usize = 100;

/// One item of a follow.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    Line(LogEntry),
    /// The deployment reached a terminal status; nothing follows.
    End {
        status: DeploymentStatus,
        error: Option<String>,
    },
    /// Reading failed; nothing follows (the client may reconnect with the last id it saw).
    Failed(String),
}

/// Which part of an app's runtime log to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppLogQuery {
    /// The newest `tail` lines (of those since `since_ms`).
    pub tail: Option<usize>,
    /// Only lines Redis received at or after this epoch ms.
    pub since_ms: Option<u64>,
}

impl AppLogQuery {
    /// Parses `tail` and `since` query values. `since` is a duration back from now in the one
    /// duration grammar (`90s`, `15m`, `1h 30m`), an RFC 3339 time, or epoch ms: see
    /// [`berth_protocol::duration::parse_since`].
    pub fn parse(tail: Option<&str>, since: Option<&str>) -> Result<AppLogQuery> {
        let tail = match tail {
            None => None,
            Some(t) => match t.trim().parse::<usize>() {
                Ok(n) if n <= MAX_TAIL => Some(n),
                _ => {
                    return Err(Error::BadRequest(format!(
                        "tail must be a whole number from 0 to {MAX_TAIL}, not {t:?}"
                    )))
                }
            },
        };
        let since_ms = since
            .map(|s| berth_protocol::duration::parse_since(s, now_ms()))
            .transpose()
            .map_err(Error::BadRequest)?;
        Ok(AppLogQuery { tail, since_ms })
    }
}

/// Checks a `Last-Event-ID` (or any stream position a client sends back).
pub fn check_last_id(id: &str) -> Result<()> {
    if berth_protocol::is_stream_id(id) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "Last-Event-ID must be a log entry id such as 1764097262123-0, not {id:?}"
        )))
    }
}

/// Reader of log streams; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    store: Store,
    /// Wakes follows when their stream grows.
    hub: LogHub,
    /// Ends every follow (and stops the hub's readers).
    shutdown: Shutdown,
}

impl Logs {
    pub fn new(store: Store, shutdown: Shutdown) -> Self {
        Logs {
            hub: LogHub::new(store.conn(), shutdown.clone()),
            store,
            shutdown,
        }
    }

    async fn deployment_exists(&self, id: &str) -> Result<()> {
        match self.store.get_deployment(id).await? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("deployment {id:?} not found"))),
        }
    }

    async fn app_exists(&self, app: &str) -> Result<()> {
        match self.store.get_app(app).await? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("app {app:?} not found"))),
        }
    }

    /// The whole (retained) log of a deployment.
    pub async fn deployment(&self, id: &str) -> Result<Vec<LogEntry>> {
        self.deployment_exists(id).await?;
        let reply: StreamRangeReply = self
            .store
            .conn()
            .xrange_all(keys::deployment_log(id))
            .await?;
        Ok(reply.ids.iter().map(entry).collect())
    }

    /// Follows a deployment's log from the start, or from after `after`, until it is terminal.
    pub async fn follow_deployment(
        &self,
        id: &str,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Followed> + Send + 'static> {
        self.deployment_exists(id).await?;
        Ok(self.follow_key(
            keys::deployment_log(id),
            after.unwrap_or_else(|| "0-0".into()),
            Some(id.to_string()),
        ))
    }

    /// Reads an app's runtime log: the newest `tail` lines (default [`DEFAULT_TAIL`]), of those
    /// since `since_ms` if given, oldest first.
    pub async fn app(&self, app: &str, q: &AppLogQuery) -> Result<Vec<LogEntry>> {
        Ok(self.app_head(app, q).await?.0)
    }

    /// [`Logs::app`], and the entry a follow continues after: the last entry read, or — when
    /// there is none (`tail=0`, or nothing since `since`) — where the stream ends now, so that a
    /// follow prints only what comes next (never the whole retained log).
    pub async fn app_head(&self, app: &str, q: &AppLogQuery) -> Result<(Vec<LogEntry>, String)> {
        self.app_exists(app).await?;
        let count = q.tail.unwrap_or(if q.since_ms.is_some() {
            MAX_TAIL
        } else {
            DEFAULT_TAIL
        });
        let end = q
            .since_ms
            .map(|ms| format!("{ms}-0"))
            .unwrap_or_else(|| "-".into());
        // One entry more than asked for when none is: the newest tells where the stream ends.
        let reply: StreamRangeReply = self
            .store
            .conn()
            .xrevrange_count(keys::app_log(app), "+", end, count.max(1))
            .await?;
        let mut out: Vec<LogEntry> = reply.ids.iter().map(entry).collect();
        let after = match out.first() {
            Some(newest) => newest.id.clone(),
            // Nothing at or after `since` (or an empty stream): what comes is what counts.
            None => match q.since_ms {
                Some(ms) if ms > 0 => format!("{}-{}", ms - 1, u64::MAX),
                _ => "0-0".into(),
            },
        };
        out.truncate(count);
        out.reverse();
        Ok((out, after))
    }

    /// Follows an app's runtime log after the entry `after` ("0-0": from the oldest retained).
    pub async fn follow_app(
        &self,
        app: &str,
        after: String,
    ) -> Result<impl Stream<Item = Followed> + Send + 'static> {
        self.app_exists(app).await?;
        Ok(self.follow_key(keys::app_log(app), after, None))
    }

    /// Follows the stream `key` after the entry `after`; until the deployment `watch` is
    /// terminal, if given.
    fn follow_key(
        &self,
        key: String,
        after: String,
        watch: Option<String>,
    ) -> impl Stream<Item = Followed> + Send + 'static {
        let news = self.hub.subscribe(&key);
        follow(Follow::new(
            self.store.clone(),
            news,
            key,
            after,
            watch,
            self.shutdown.clone(),
        ))
    }
}

/// The state of one follow.
struct Follow {
    /// Reads go over the store's shared connection; they never block.
    store: Store,
    /// The batches the hub's reader of this stream reads.
    news: News,
    key: String,
    /// Id of the last entry read: the next read starts after it.
    last: String,
    /// For a deployment follow: the deployment whose status ends it.
    watch: Option<String>,
    /// Entries read but not handed out yet.
    pending: VecDeque<LogEntry>,
    /// Set once the deployment is terminal: reads no longer block, and the first empty read ends
    /// the follow with this status.
    draining: Option<(DeploymentStatus, Option<String>)>,
    /// Read from Redis before waiting for the hub again: at the start, after a batch that does
    /// not follow on `last`, after a quiet block interval, and while draining.
    must_read: bool,
    done: bool,
    /// Ends the follow when the process shuts down.
    shutdown: Shutdown,
}

impl Follow {
    fn new(
        store: Store,
        news: News,
        key: String,
        last: String,
        watch: Option<String>,
        shutdown: Shutdown,
    ) -> Self {
        Follow {
            store,
            news,
            key,
            last,
            watch,
            pending: VecDeque::new(),
            draining: None,
            must_read: true,
            done: false,
            shutdown,
        }
    }
}

fn follow(state: Follow) -> impl Stream<Item = Followed> + Send + 'static {
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Followed::Line(e), st));
            }
            if st.done || st.shutdown.is_cancelled() {
                return None;
            }
            if st.must_read {
                let opts = StreamReadOptions::default().count(READ_COUNT);
                let read: redis::RedisResult<Option<StreamReadReply>> = st
                    .store
                    .conn()
                    .xread_options(&[st.key.as_str()], &[st.last.as_str()], &opts)
                    .await;
                let entries: Vec<LogEntry> = match read {
                    Ok(reply) => reply
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .iter()
                        .map(entry)
                        .collect(),
                    // Redis is away: end the follow without `end`, as a shutdown does; the
                    // client resumes it with its last id once the API answers again.
                    Err(e) if berth_bus::is_unavailable(&e) => return None,
                    Err(e) => {
                        st.done = true;
                        return Some((Followed::Failed(format!("reading the log: {e}")), st));
                    }
                };
                let got = !entries.is_empty();
                // The closing line is a `system` one and the record turns terminal right after
                // it; a batch of build output alone cannot be the end, so it costs no status read.
                let may_end = !got || has_system_line(&entries);
                st.take(entries);
                if let Some((status, error)) = st.draining.clone() {
                    if !got {
                        st.done = true;
                        return Some((Followed::End { status, error }, st));
                    }
                    continue;
                }
                if may_end {
                    if let Some(end) = st.check_status().await {
                        return Some((end, st));
                    }
                    if st.draining.is_some() {
                        continue;
                    }
                }
                if got {
                    // There may be more than one read's worth.
                    continue;
                }
                st.must_read = false;
            }
            // Up to date: wait for the hub's next batch, at most one block interval.
            let news = tokio::select! {
                () = st.shutdown.cancelled() => return None,
                news = tokio::time::timeout(BLOCK, st.news.recv()) => news,
            };
            match news {
                Ok(Ok(batch)) => match part_after(&st.last, &batch) {
                    Some(entries) => {
                        // A deployment may end after a system line: read and check then.
                        st.must_read = st.watch.is_some() && has_system_line(&entries);
                        st.take(entries);
                    }
                    None => st.must_read = true,
                },
                // Quiet for a block interval: read anyway (and check a deployment's status).
                Err(_) => st.must_read = true,
                // Behind by more than the hub keeps: read what was missed.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => st.must_read = true,
                // The reader is gone (it cannot be while we listen, short of a panic): read
                // every block interval from now on.
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    tokio::select! {
                        () = st.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(BLOCK) => {}
                    }
                    st.must_read = true;
                }
            }
        }
    })
}

/// The entries of `batch` after `last`, if the batch leaves no gap after `last` (`None`: read
/// from Redis instead). A batch read already gives nothing.
fn part_after(last: &str, batch: &Batch) -> Option<Vec<LogEntry>> {
    let last = stream_id_order(last)?;
    if stream_id_order(&batch.after)? > last {
        return None;
    }
    Some(
        batch
            .entries
            .iter()
            .filter(|e| stream_id_order(&e.id).is_some_and(|id| id > last))
            .cloned()
            .collect(),
    )
}

fn has_system_line(entries: &[LogEntry]) -> bool {
    entries.iter().any(|e| e.line.stream == LogStream::System)
}

impl Follow {
    /// Queues `entries` (which follow on `last`) to be handed out.
    fn take(&mut self, entries: Vec<LogEntry>) {
        if let Some(e) = entries.last() {
            self.last = e.id.clone();
        }
        self.pending.extend(entries);
    }

    /// For a deployment follow: starts draining once the deployment is terminal; the item that
    /// ends the follow if the deployment cannot be read.
    async fn check_status(&mut self) -> Option<Followed> {
        let id = self.watch.as_ref()?;
        match self.store.get_deployment(id).await {
            Ok(Some(d)) if d.status.is_terminal() => {
                self.draining = Some((d.status, d.error));
                None
            }
            Ok(Some(_)) => None,
            Ok(None) => {
                self.done = true;
                Some(Followed::Failed("the deployment was deleted".into()))
            }
            // Redis is away: the next read ends the follow for the client to resume.
            Err(Error::Unavailable(_)) => None,
            Err(e) => {
                self.done = true;
                Some(Followed::Failed(format!("reading the deployment: {e}")))
            }
        }
    }
}

/// A stream entry as a log entry; missing fields read as empty.
pub(crate) fn entry(e: &StreamId) -> LogEntry {
    LogEntry {
        id: e.id.clone(),
        line: LogLine::from_fields(|k| e.get::<String>(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_batch_is_taken_after_the_last_entry_and_never_across_a_gap() {
        let e = |id: &str| LogEntry {
            id: id.into(),
            line: LogLine {
                ts: 0,
                stream: LogStream::Stdout,
                line: id.into(),
                node: None,
                container: None,
                deployment: None,
            },
        };
        let batch = Batch {
            after: "10-0".into(),
            entries: vec![e("10-1"), e("11-0"), e("12-0")],
        };
        let ids =
            |v: Option<Vec<LogEntry>>| v.map(|v| v.into_iter().map(|e| e.id).collect::<Vec<_>>());
        // Follows directly on the last entry read: all of it.
        assert_eq!(
            ids(part_after("10-0", &batch)).unwrap(),
            ["10-1", "11-0", "12-0"]
        );
        // Partly read already (by this follow's own XREAD): the rest.
        assert_eq!(ids(part_after("11-0", &batch)).unwrap(), ["12-0"]);
        // All read already: nothing.
        assert_eq!(
            ids(part_after("12-0", &batch)).unwrap(),
            Vec::<String>::new()
        );
        // Entries between the last read and the batch are missing: read from Redis.
        assert_eq!(ids(part_after("9-5", &batch)), None);
        // Ids compare as numbers, not text.
        assert_eq!(
            ids(part_after(
                "9-0",
                &Batch {
                    after: "10-0".into(),
                    entries: vec![]
                }
            )),
            None
        );
        assert!(part_after("100-0", &batch).unwrap().is_empty());
    }

    #[test]
    fn parses_app_log_queries() {
        assert_eq!(
            AppLogQuery::parse(None, None).unwrap(),
            AppLogQuery::default()
        );
        assert_eq!(AppLogQuery::parse(Some("5"), None).unwrap().tail, Some(5));
        // 0: no lines (with a follow: only the lines that come next).
        assert_eq!(AppLogQuery::parse(Some("0"), None).unwrap().tail, Some(0));
        for bad in ["-1", "x", "10001"] {
            let e = AppLogQuery::parse(Some(bad), None).unwrap_err();
            assert!(e.is_client_error(), "{bad}");
            assert!(e.to_string().contains("tail"), "{e}");
        }
        assert_eq!(
            AppLogQuery::parse(None, Some("1700000000000"))
                .unwrap()
                .since_ms,
            Some(1_700_000_000_000)
        );
        for (since, back) in [("5m", 300_000), ("1h 30m", 5_400_000), ("90s", 90_000)] {
            let from = AppLogQuery::parse(None, Some(since))
                .unwrap()
                .since_ms
                .unwrap();
            let expect = now_ms() - back;
            assert!(from.abs_diff(expect) < 5_000, "{since}: {from}");
        }
        assert_eq!(
            AppLogQuery::parse(None, Some("2026-11-25T19:01:02Z"))
                .unwrap()
                .since_ms,
            Some(1_795_633_262_000)
        );
        for bad in ["yesterday-ish", "15x", "1h 30"] {
            let e = AppLogQuery::parse(None, Some(bad)).unwrap_err();
            assert!(e.is_client_error(), "{bad}");
            assert!(e.to_string().contains("since must be"), "{e}");
        }
    }

    #[test]
    fn checks_last_event_ids() {
        assert!(check_last_id("1764097262123-0").is_ok());
        for bad in ["", "12", "-1", "1-", "a-1", "1-2-3", "1 -2"] {
            assert!(check_last_id(bad).is_err(), "{bad:?}");
        }
    }
}
