//! Where log lines go: a deployment's stream `berth:logs:<deployment>` or an app's runtime stream
//! `berth:applogs:<app>`.
//!
//! Every line the node ships — git, docker build output, probe progress, errors, and the
//! containers' own stdout/stderr ([`crate::log_shipper`]) — passes through [`LogSink`]: its length
//! is capped and every registered secret is masked there, the one step before a line leaves the
//! node. Writing a log line never fails a deployment, and never waits for Redis: while Redis is
//! away the lines are held in the sink (at most [`HELD_MAX`], the oldest dropped beyond that
//! and the drop said in the log) and written first, in order, by the next write once Redis
//! answers — or by [`LogSink::flush`], which a deployment calls before it reports its end, so
//! its log is whole before the coordinator closes it. Any other Redis error drops the lines
//! (logged locally).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use berth_bus::{Backoff, Redis};
use berth_protocol::{keys, now_ms, LogLine, LogStream};
use tokio_util::sync::CancellationToken;

/// Longest line stored; longer lines are cut (on a character boundary) and marked.
pub const MAX_LINE: usize = 4 * 1024;

/// Most lines a sink holds while Redis is away (about 8 MiB at the longest lines, typically a
/// few hundred KiB); beyond it the oldest go.
pub const HELD_MAX: usize = 2_000;

/// Writes log lines of one deployment.
#[derive(Clone)]
pub struct LogSink {
    target: Target,
    /// Values replaced by `********` in every line before it leaves the node.
    masks: std::sync::Arc<Vec<String>>,
}

/// Lines kept by a memory sink (tests).
#[cfg(test)]
pub type MemoryLines = std::sync::Arc<std::sync::Mutex<Vec<(LogStream, String)>>>;

#[derive(Clone)]
enum Target {
    Redis {
        conn: Redis,
        key: String,
        /// Approximate stream cap (XADD MAXLEN ~).
        maxlen: usize,
        /// What every entry carries besides its `ts`, `stream` and `line` (`node`, `container`,
        /// `deployment` for runtime logs; nothing for a deployment's log).
        tags: std::sync::Arc<LogLine>,
        /// Lines Redis could not take yet, shared by the sink's clones; locked for the whole of
        /// a write, so the lines of one sink land in the order they were written.
        held: Arc<tokio::sync::Mutex<Held>>,
    },
    /// Collects lines in memory (tests).
    #[cfg(test)]
    Memory(MemoryLines),
}

impl LogSink {
    /// A sink writing to the log stream of `deployment_id`.
    pub fn redis(conn: Redis, deployment_id: &str) -> Self {
        LogSink {
            target: Target::Redis {
                conn,
                key: keys::deployment_log(deployment_id),
                maxlen: keys::LOG_MAXLEN,
                tags: std::sync::Arc::new(LogLine::new(0, LogStream::System, "")),
                held: Arc::default(),
            },
            masks: Default::default(),
        }
    }

    /// A sink writing one container's output to its app's runtime log stream.
    pub fn app(conn: Redis, app: &str, node: &str, container: &str, deployment: &str) -> Self {
        LogSink {
            target: Target::Redis {
                conn,
                key: keys::app_log(app),
                maxlen: keys::APP_LOG_MAXLEN,
                tags: std::sync::Arc::new(LogLine {
                    node: Some(node.to_string()),
                    container: Some(container.to_string()),
                    deployment: Some(deployment.to_string()),
                    ..LogLine::new(0, LogStream::Stdout, "")
                }),
                held: Arc::default(),
            },
            masks: Default::default(),
        }
    }

    /// A sink that keeps lines in memory, and a handle to read them.
    #[cfg(test)]
    pub fn memory() -> (Self, MemoryLines) {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        (
            LogSink {
                target: Target::Memory(lines.clone()),
                masks: Default::default(),
            },
            lines,
        )
    }

    /// The same sink, masking `secrets` (empty values are ignored) in every line.
    pub fn with_masks(mut self, secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = self.masks.as_ref().clone();
        all.extend(secrets.into_iter().filter(|s| !s.is_empty()));
        // Longest first, so a secret containing another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.masks = std::sync::Arc::new(all);
        self
    }

    /// Replaces every registered secret in `line`.
    pub fn mask(&self, line: String) -> String {
        self.masks.iter().fold(line, |l, secret| {
            if l.contains(secret.as_str()) {
                l.replace(secret.as_str(), "********")
            } else {
                l
            }
        })
    }

    /// A line written by Berth itself.
    pub async fn system(&self, text: impl AsRef<str>) {
        self.write(LogStream::System, text.as_ref()).await;
    }

    /// Writes `text`, split into lines (a trailing newline does not make an empty line).
    pub async fn write(&self, stream: LogStream, text: &str) {
        let lines: Vec<String> = split_lines(text).map(str::to_string).collect();
        self.write_lines(stream, lines).await;
    }

    /// Writes already split lines in one round trip.
    pub async fn write_lines(&self, stream: LogStream, lines: Vec<String>) {
        let ts = now_ms();
        self.write_entries(lines.into_iter().map(|l| (ts, stream, l)).collect())
            .await;
    }

    /// Writes lines that carry their own time (epoch ms) and stream, in one round trip. Each is
    /// masked and capped here. Returns whether they were stored.
    pub async fn write_entries(&self, entries: Vec<(u64, LogStream, String)>) -> bool {
        self.write_entries_and(entries, None).await
    }

    /// [`LogSink::write_entries`], and `also` in the same MULTI/EXEC: the lines and `also` land
    /// together or not at all (the log shipper's cursor, so a node killed mid-write neither
    /// loses nor repeats a line). While Redis is away the lines are held with the latest `also`
    /// (see the module docs); false then.
    pub async fn write_entries_and(
        &self,
        entries: Vec<(u64, LogStream, String)>,
        also: Option<redis::Cmd>,
    ) -> bool {
        if entries.is_empty() {
            return true;
        }
        let lines: Vec<(u64, LogStream, String)> = entries
            .into_iter()
            .map(|(ts, s, l)| (ts, s, cap_line(&self.mask(l))))
            .collect();
        match &self.target {
            Target::Redis { held, .. } => {
                let mut held = held.lock().await;
                held.add(lines, also);
                self.write_held(&mut held).await
            }
            #[cfg(test)]
            Target::Memory(store) => {
                if let Ok(mut v) = store.lock() {
                    v.extend(lines.into_iter().map(|(_, s, l)| (s, l)));
                }
                true
            }
        }
    }
}

impl LogSink {
    /// Whether lines wait for Redis.
    pub async fn is_holding(&self) -> bool {
        match &self.target {
            Target::Redis { held, .. } => !held.lock().await.lines.is_empty(),
            #[cfg(test)]
            Target::Memory(_) => false,
        }
    }

    /// Tries once to write the lines held while Redis was away; whether none is held now.
    pub async fn try_flush(&self) -> bool {
        match &self.target {
            Target::Redis { held, .. } => {
                let mut held = held.lock().await;
                self.write_held(&mut held).await || !held.waiting
            }
            #[cfg(test)]
            Target::Memory(_) => true,
        }
    }

    /// Writes the lines held while Redis was away, waiting for Redis (with capped backoff, at
    /// once when it answers again) until it takes them or `stop` is cancelled. A deployment
    /// calls it before it reports its end.
    pub async fn flush(&self, stop: &CancellationToken) {
        let (held, conn) = match &self.target {
            Target::Redis { held, conn, .. } => (held, conn),
            #[cfg(test)]
            Target::Memory(_) => return,
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            {
                let mut held = held.lock().await;
                if held.lines.is_empty() || self.write_held(&mut held).await {
                    return;
                }
                if !held.waiting {
                    // Lines that could not be written for another reason are gone.
                    return;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = backoff.wait() => {}
                () = conn.back() => {}
            }
        }
    }

    /// Writes what `held` holds in one round trip; whether it was stored. While Redis is away
    /// the lines stay held (`waiting`); on any other error they are dropped.
    async fn write_held(&self, held: &mut Held) -> bool {
        let (conn, key, maxlen, tags) = match &self.target {
            Target::Redis {
                conn,
                key,
                maxlen,
                tags,
                ..
            } => (conn, key, maxlen, tags),
            #[cfg(test)]
            Target::Memory(_) => return true,
        };
        if held.lines.is_empty() {
            return true;
        }
        let mut pipe = redis::pipe();
        if held.also.is_some() {
            pipe.atomic();
        }
        let dropped = (held.dropped > 0).then(|| {
            (
                now_ms(),
                LogStream::System,
                format!(
                    "[{} log line(s) were dropped here: Redis was away and more than {HELD_MAX} waited]",
                    held.dropped
                ),
            )
        });
        for (ts, stream, line) in dropped.iter().chain(held.lines.iter()) {
            let entry = LogLine {
                ts: *ts,
                stream: *stream,
                line: line.clone(),
                ..(**tags).clone()
            };
            let cmd = pipe
                .cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(*maxlen)
                .arg("*");
            for (k, v) in entry.fields() {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        if let Some(also) = &held.also {
            pipe.add_command(also.clone()).ignore();
        }
        let mut conn = conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                if held.waiting {
                    tracing::debug!(key = %key, lines = held.lines.len(), "log lines held while Redis was away written");
                }
                *held = Held::default();
                true
            }
            Err(e) if berth_bus::is_unavailable(&e) => {
                // The node's connection logs the outage; the lines wait.
                held.waiting = true;
                false
            }
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "could not write {} log line(s)", held.lines.len());
                *held = Held::default();
                false
            }
        }
    }
}

/// Lines a sink could not write yet, oldest first.
#[derive(Default)]
struct Held {
    lines: VecDeque<(u64, LogStream, String)>,
    /// The latest command to land with them (a newer cursor replaces an older one).
    also: Option<redis::Cmd>,
    /// Lines dropped from the front beyond [`HELD_MAX`].
    dropped: u64,
    /// The last write failed because Redis was away.
    waiting: bool,
}

impl Held {
    fn add(&mut self, lines: Vec<(u64, LogStream, String)>, also: Option<redis::Cmd>) {
        self.lines.extend(lines);
        if also.is_some() {
            self.also = also;
        }
        while self.lines.len() > HELD_MAX {
            self.lines.pop_front();
            self.dropped += 1;
        }
    }
}

/// Splits text into lines, dropping the `\r` of `\r\n` and the empty piece after a final newline.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let text = (!text.is_empty()).then(|| text.strip_suffix('\n').unwrap_or(text));
    text.into_iter()
        .flat_map(|t| t.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Cuts a line to [`MAX_LINE`] bytes on a character boundary.
pub fn cap_line(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_string();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [line cut at {} bytes]", &line[..end], MAX_LINE)
}

/// Reassembles lines from chunks that may end mid-line (docker build output).
#[derive(Default)]
pub struct LineBuffer {
    /// Text after the last newline seen so far.
    pending: String,
}

impl LineBuffer {
    /// Adds a chunk; returns the lines it completed.
    pub fn push(&mut self, chunk: &str) -> Vec<String> {
        self.pending.push_str(chunk);
        let Some(last_nl) = self.pending.rfind('\n') else {
            if self.pending.len() > MAX_LINE {
                return vec![std::mem::take(&mut self.pending)];
            }
            return Vec::new();
        };
        let rest = self.pending.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        complete
            .strip_suffix('\n')
            .unwrap_or(&complete)
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect()
    }

    /// The unterminated last line, if any.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.strip_suffix('\r').unwrap_or(&rest);
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn masks_secrets_in_every_line() {
        let (sink, lines) = LogSink::memory();
        let sink = sink.with_masks([
            "tok".to_string(),
            "tok-123-secret".to_string(),
            String::new(),
        ]);
        sink.system("cloning with tok-123-secret and tok").await;
        sink.write_lines(LogStream::Stdout, vec!["x tok-123-secret y".into()])
            .await;
        let got: Vec<String> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        assert_eq!(
            got,
            vec!["cloning with ******** and ********", "x ******** y"]
        );
    }

    #[actix_rt::test]
    async fn masks_before_cutting_a_long_line() {
        let secret = "tok-abcdef-0123456789";
        let (sink, lines) = LogSink::memory();
        let sink = sink.with_masks([secret.to_string()]);
        let line = format!("{}{secret} tail", "x".repeat(MAX_LINE - 5));
        sink.write_entries(vec![(1, LogStream::Stdout, line)]).await;
        let got = lines.lock().unwrap()[0].1.clone();
        assert!(got.ends_with("bytes]"), "cut");
        assert!(
            !got.contains(&secret[..5]),
            "no part of the secret survives the cut"
        );
    }

    #[test]
    fn splits_lines() {
        let v: Vec<&str> = split_lines("a\r\nb\n\nc\n").collect();
        assert_eq!(v, ["a", "b", "", "c"]);
        assert_eq!(split_lines("").count(), 0);
        assert_eq!(split_lines("\n").collect::<Vec<_>>(), [""]);
        assert_eq!(split_lines("x").collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn caps_long_lines_on_char_boundary() {
        let long = "é".repeat(MAX_LINE);
        let capped = cap_line(&long);
        assert!(capped.len() < MAX_LINE + 64);
        assert!(capped.ends_with("bytes]"));
        assert_eq!(cap_line("short"), "short");
    }

    #[test]
    fn line_buffer_joins_partial_chunks() {
        let mut b = LineBuffer::default();
        assert!(b.push("Step 1/2 : FR").is_empty());
        assert_eq!(
            b.push("OM busybox\n ---> abc\r\nhal"),
            ["Step 1/2 : FROM busybox", " ---> abc"]
        );
        assert_eq!(b.finish().as_deref(), Some("hal"));
        assert_eq!(b.finish(), None);
    }

    #[actix_rt::test]
    async fn memory_sink_collects() {
        let (sink, lines) = LogSink::memory();
        sink.system("one\ntwo\n").await;
        let got = lines.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                (LogStream::System, "one".to_string()),
                (LogStream::System, "two".to_string())
            ]
        );
    }
}
