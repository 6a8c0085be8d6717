//! Running a command in a running replica of an app (`berth exec`): the job its node runs, the
//! entries of the exec's output stream `berth:exec:<id>`, and the pure rules around them.
//!
//! The path: the coordinator picks the replica, writes a [`ExecEntry::Queued`] entry (with the
//! stream's TTL) and queues an [`ExecJob`] on the replica's node's job stream; the node claims
//! the exec (`berth:exec:<id>:claim`, SET NX — the coordinator claims it too, as `expired`, when
//! no node did within [`PICKUP_S`], so a late node never runs it), runs the command with Docker's
//! exec API and appends [`ExecEntry::Started`], the output as [`ExecEntry::Output`] chunks, and
//! one [`ExecEntry::End`]. The API follows the stream out as Server-Sent Events.

use serde::{Deserialize, Serialize};

/// How long a command may run when the request names no timeout.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// The longest timeout a request may ask for.
pub const MAX_TIMEOUT_S: u64 = 24 * 3600;
/// How long a node has to pick a queued exec up before the API gives up on it (a down node).
pub const PICKUP_S: u64 = 15;
/// How long an exec's output stays in Redis after its last entry was written.
pub const KEEP_S: u64 = 600;
/// Approximate cap (entries) of one exec's output stream (XADD MAXLEN ~): with chunks of at most
/// [`MAX_CHUNK`] bytes, about 40 MiB.
pub const MAXLEN: usize = 10_000;
/// Largest output chunk stored in one entry; longer output is split.
pub const MAX_CHUNK: usize = 4096;
/// Largest command (all arguments together, in bytes).
pub const MAX_CMD_BYTES: usize = 64 * 1024;

/// Work for a node: run `cmd` in `container` (one of its replicas of `app`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecJob {
    pub exec_id: String,
    pub app: String,
    /// The container id, as the route's upstream names it.
    pub container: String,
    pub cmd: Vec<String>,
    /// Seconds the command may run; then the node kills it and reports a timeout.
    pub timeout_s: u64,
    /// Epoch ms after which the job must not start any more: the API has given up on it.
    pub pickup_by_ms: u64,
}

/// Which output a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// One entry of an exec's output stream. Stored as plain stream fields (`type` and the
/// variant's fields), so `redis-cli XRANGE` reads them; sent to API clients as the JSON of the
/// SSE event named after `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecEntry {
    /// Written by the coordinator when it queued the job.
    Queued {
        node: String,
        container: String,
        timeout_s: u64,
    },
    /// The node took the job and Docker created the exec.
    Started { node: String, container: String },
    /// Output as the command wrote it (UTF-8; invalid bytes replaced).
    Output { stream: OutputStream, data: String },
    /// The last entry: the command's exit code, or why there is none.
    End {
        exit_code: Option<i64>,
        error: Option<String>,
    },
}

impl ExecEntry {
    /// An end without an exit code.
    pub fn failed(error: impl Into<String>) -> ExecEntry {
        ExecEntry::End {
            exit_code: None,
            error: Some(error.into()),
        }
    }

    /// The name of its SSE event (= its `type` field).
    pub fn kind(&self) -> &'static str {
        match self {
            ExecEntry::Queued { .. } => "queued",
            ExecEntry::Started { .. } => "started",
            ExecEntry::Output { .. } => "output",
            ExecEntry::End { .. } => "end",
        }
    }

    /// The entry as its stream fields: `type`, then the variant's own.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("type", self.kind().to_string())];
        match self {
            ExecEntry::Queued {
                node,
                container,
                timeout_s,
            } => {
                out.push(("node", node.clone()));
                out.push(("container", container.clone()));
                out.push(("timeout_s", timeout_s.to_string()));
            }
            ExecEntry::Started { node, container } => {
                out.push(("node", node.clone()));
                out.push(("container", container.clone()));
            }
            ExecEntry::Output { stream, data } => {
                out.push(("stream", stream.as_str().to_string()));
                out.push(("data", data.clone()));
            }
            ExecEntry::End { exit_code, error } => {
                if let Some(c) = exit_code {
                    out.push(("exit_code", c.to_string()));
                }
                if let Some(e) = error {
                    out.push(("error", e.clone()));
                }
            }
        }
        out
    }

    /// The entry from its stream fields (`get` reads one); `None` for an unknown `type`.
    pub fn from_fields(get: impl Fn(&str) -> Option<String>) -> Option<ExecEntry> {
        let text = |k: &str| get(k).unwrap_or_default();
        Some(match get("type")?.as_str() {
            "queued" => ExecEntry::Queued {
                node: text("node"),
                container: text("container"),
                timeout_s: get("timeout_s")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(DEFAULT_TIMEOUT_S),
            },
            "started" => ExecEntry::Started {
                node: text("node"),
                container: text("container"),
            },
            "output" => ExecEntry::Output {
                stream: match get("stream").as_deref() {
                    Some("stderr") => OutputStream::Stderr,
                    _ => OutputStream::Stdout,
                },
                data: text("data"),
            },
            "end" => ExecEntry::End {
                exit_code: get("exit_code").and_then(|c| c.parse().ok()),
                error: get("error"),
            },
            _ => return None,
        })
    }
}

/// Checks a command: at least the program, no NUL byte (no process can take one), at most
/// [`MAX_CMD_BYTES`] in all.
pub fn check_cmd(cmd: &[String]) -> Result<(), String> {
    match cmd.first() {
        None => {
            return Err(
                "the command is empty: give one after `--`, e.g. `berth exec web -- ls /`".into(),
            )
        }
        Some(p) if p.trim().is_empty() => {
            return Err("the command's program (its first word) is empty".into())
        }
        Some(_) => {}
    }
    if cmd.iter().any(|a| a.contains('\0')) {
        return Err("the command contains a NUL byte".into());
    }
    let size: usize = cmd.iter().map(String::len).sum();
    if size > MAX_CMD_BYTES {
        return Err(format!(
            "the command is {size} bytes long; at most {MAX_CMD_BYTES} are accepted"
        ));
    }
    Ok(())
}

/// The timeout a request asks for, or the default; between 1 s and [`MAX_TIMEOUT_S`].
pub fn timeout_s(asked: Option<u64>) -> Result<u64, String> {
    match asked {
        None => Ok(DEFAULT_TIMEOUT_S),
        Some(t) if (1..=MAX_TIMEOUT_S).contains(&t) => Ok(t),
        Some(t) => Err(format!(
            "timeout_s must be from 1 to {MAX_TIMEOUT_S} seconds, not {t}"
        )),
    }
}

/// The TTL (seconds) to give the output stream when writing to it at `now_ms`, for a command
/// that may run until `run_until_ms`: it outlives the run by [`KEEP_S`].
pub fn stream_ttl_s(run_until_ms: u64, now_ms: u64) -> u64 {
    run_until_ms.saturating_sub(now_ms).div_ceil(1000) + KEEP_S
}

/// Splits output into chunks of at most [`MAX_CHUNK`] bytes, on character boundaries.
pub fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_CHUNK {
        let mut cut = MAX_CHUNK;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_stream_fields() {
        for e in [
            ExecEntry::Queued {
                node: "n1".into(),
                container: "c".into(),
                timeout_s: 5,
            },
            ExecEntry::Started {
                node: "n1".into(),
                container: "c".into(),
            },
            ExecEntry::Output {
                stream: OutputStream::Stderr,
                data: "boom\n".into(),
            },
            ExecEntry::Output {
                stream: OutputStream::Stdout,
                data: String::new(),
            },
            ExecEntry::End {
                exit_code: Some(-3),
                error: None,
            },
            ExecEntry::failed("container gone"),
        ] {
            let fields = e.fields();
            assert_eq!(fields[0], ("type", e.kind().to_string()));
            let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| v.clone());
            assert_eq!(ExecEntry::from_fields(get), Some(e));
        }
        assert_eq!(ExecEntry::from_fields(|_| None), None);
        assert_eq!(
            ExecEntry::from_fields(|k| (k == "type").then(|| "later".to_string())),
            None
        );
    }

    #[test]
    fn entries_serialize_with_their_type() {
        let e = ExecEntry::Output {
            stream: OutputStream::Stdout,
            data: "hi".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type": "output", "stream": "stdout", "data": "hi"})
        );
        let end: ExecEntry =
            serde_json::from_str(r#"{"type":"end","exit_code":3,"error":null}"#).unwrap();
        assert_eq!(
            end,
            ExecEntry::End {
                exit_code: Some(3),
                error: None
            }
        );
    }

    #[test]
    fn commands_are_checked() {
        let v = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(check_cmd(&v(&["ls", "-l"])).is_ok());
        assert!(check_cmd(&v(&["sh", "-c", ""])).is_ok());
        assert!(check_cmd(&[]).unwrap_err().contains("empty"));
        assert!(check_cmd(&v(&[" "])).unwrap_err().contains("program"));
        assert!(check_cmd(&v(&["a\0b"])).unwrap_err().contains("NUL"));
        let big = "x".repeat(MAX_CMD_BYTES);
        assert!(check_cmd(std::slice::from_ref(&big)).is_ok());
        assert!(check_cmd(&[big, "y".into()]).unwrap_err().contains("bytes"));
    }

    #[test]
    fn timeouts_default_and_are_bounded() {
        assert_eq!(timeout_s(None), Ok(DEFAULT_TIMEOUT_S));
        assert_eq!(timeout_s(Some(1)), Ok(1));
        assert_eq!(timeout_s(Some(MAX_TIMEOUT_S)), Ok(MAX_TIMEOUT_S));
        assert!(timeout_s(Some(0)).is_err());
        assert!(timeout_s(Some(MAX_TIMEOUT_S + 1)).is_err());
    }

    #[test]
    fn the_stream_outlives_the_run() {
        assert_eq!(stream_ttl_s(10_000, 10_000), KEEP_S);
        assert_eq!(stream_ttl_s(10_001, 10_000), KEEP_S + 1);
        assert_eq!(stream_ttl_s(70_000, 10_000), KEEP_S + 60);
        // Past the run's end (or a clock ahead): still kept.
        assert_eq!(stream_ttl_s(5_000, 10_000), KEEP_S);
    }

    #[test]
    fn output_is_chunked_on_character_boundaries() {
        assert!(chunks("").is_empty());
        assert_eq!(chunks("abc"), ["abc"]);
        let exact = "a".repeat(MAX_CHUNK);
        assert_eq!(chunks(&exact), [exact.as_str()]);
        // A 3-byte character straddling the cut goes whole into the next chunk.
        let text = format!("{}€tail", "a".repeat(MAX_CHUNK - 1));
        let got = chunks(&text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_CHUNK - 1);
        assert_eq!(got[1], "€tail");
        assert_eq!(got.concat(), text);
    }
}
