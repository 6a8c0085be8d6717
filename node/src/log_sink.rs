//! Where log lines go: a deployment's stream `berth:logs:<deployment>` or an app's runtime stream
//! `berth:applogs:<app>`.
//!
//! Every line the node ships — git, docker build output, probe progress, errors, and the
//! containers' own stdout/stderr ([`crate::log_shipper`]) — passes through [`LogSink`]: its length
//! is capped and every registered secret is masked there, the one step before a line leaves the
//! node. Writing a log line never fails a deployment: a Redis error is logged locally and the
//! line is dropped.

use berth_protocol::{keys, now_ms, LogLine, LogStream};
use redis::aio::ConnectionManager;

/// Longest line stored; longer lines are cut (on a character boundary) and marked.
pub const MAX_LINE: usize = 4 * 1024;

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
        conn: ConnectionManager,
        key: String,
        /// Approximate stream cap (XADD MAXLEN ~).
        maxlen: usize,
        /// What every entry carries besides its `ts`, `stream` and `line` (`node`, `container`,
        /// `deployment` for runtime logs; nothing for a deployment's log).
        tags: std::sync::Arc<LogLine>,
    },
    /// Collects lines in memory (tests).
    #[cfg(test)]
    Memory(MemoryLines),
}

impl LogSink {
    /// A sink writing to the log stream of `deployment_id`.
    pub fn redis(conn: ConnectionManager, deployment_id: &str) -> Self {
        LogSink {
            target: Target::Redis {
                conn,
                key: keys::deployment_log(deployment_id),
                maxlen: keys::LOG_MAXLEN,
                tags: std::sync::Arc::new(LogLine::new(0, LogStream::System, "")),
            },
            masks: Default::default(),
        }
    }

    /// A sink writing one container's output to its app's runtime log stream.
    pub fn app(
        conn: ConnectionManager,
        app: &str,
        node: &str,
        container: &str,
        deployment: &str,
    ) -> Self {
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
    /// loses nor repeats a line).
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
            Target::Redis {
                conn,
                key,
                maxlen,
                tags,
            } => {
                let mut pipe = redis::pipe();
                if also.is_some() {
                    pipe.atomic();
                }
                for (ts, stream, line) in &lines {
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
                if let Some(also) = also {
                    pipe.add_command(also).ignore();
                }
                let mut conn = conn.clone();
                if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                    tracing::warn!(key = %key, error = %e, "could not write {} log line(s)", lines.len());
                    return false;
                }
                true
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
