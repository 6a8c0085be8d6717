//! `berth logs <app> [-f] [-n N] [--since TIME] [-t]`: an app's runtime log, every replica on
//! every node merged, as `[time ]node/container stream  line` (one JSON object a line with
//! `--json`).

use anyhow::Result;
use berth_protocol::LogEntry;

use super::args::LogsArgs;
use super::http::Client;
use super::render::{for_output, timestamp};

pub(super) async fn run(c: &Client, json: bool, a: LogsArgs) -> Result<()> {
    let tail = a.tail.map(|n| n.to_string());
    let mut query = vec![];
    if let Some(n) = &tail {
        query.push(("tail", n.as_str()));
    }
    if let Some(s) = &a.since {
        query.push(("since", s.as_str()));
    }
    let path = ["apps", &a.app, "logs"];
    let show = Show {
        json,
        timestamps: a.timestamps,
    };
    if a.follow {
        query.push(("follow", "1"));
        return c
            .follow(&path, &query, |ev| {
                if let Some(e) = ev.json::<LogEntry>() {
                    println!("{}", show.line(&e));
                }
                Ok(true)
            })
            .await;
    }
    query.push(("format", "json"));
    let entries: Vec<LogEntry> = c.get(&path, &query).await?;
    if entries.is_empty() && !json && a.tail != Some(0) {
        let since = a
            .since
            .as_deref()
            .map(|s| format!(" since {s}"))
            .unwrap_or_default();
        // On stderr: stdout holds only log lines.
        eprintln!(
            "no log lines of {}{since} — is it deployed? (`berth apps show {}`)",
            a.app, a.app
        );
    }
    for e in &entries {
        println!("{}", show.line(e));
    }
    Ok(())
}

/// How runtime log lines are printed.
#[derive(Clone, Copy)]
struct Show {
    json: bool,
    timestamps: bool,
}

impl Show {
    /// One runtime log line: `[time ]node/container stream  line`, the stream being `stdout` or
    /// `stderr` (one JSON object with `--json`). Control sequences are left out unless the output
    /// is a terminal.
    fn line(self, e: &LogEntry) -> String {
        if self.json {
            return serde_json::to_string(e).unwrap_or_default();
        }
        let l = &e.line;
        let time = if self.timestamps {
            format!("{} ", timestamp(l.ts))
        } else {
            String::new()
        };
        format!(
            "{time}{}/{} {}  {}",
            l.node.as_deref().unwrap_or("?"),
            l.container.as_deref().unwrap_or("?"),
            l.stream.as_str(),
            for_output(&l.line)
        )
    }
}

#[cfg(test)]
mod tests {
    use berth_protocol::{LogLine, LogStream};

    use super::*;

    #[test]
    fn a_line_shows_its_stream_and_with_timestamps_its_time() {
        let e = LogEntry {
            id: "1-0".into(),
            line: LogLine {
                node: Some("n1".into()),
                container: Some("berth-web-d1".into()),
                deployment: Some("d1".into()),
                ..LogLine::new(1_764_583_200_123, LogStream::Stderr, "oops")
            },
        };
        let plain = Show {
            json: false,
            timestamps: false,
        };
        assert_eq!(plain.line(&e), "n1/berth-web-d1 stderr  oops");
        let timed = Show {
            timestamps: true,
            ..plain
        };
        assert_eq!(
            timed.line(&e),
            "2025-12-01T10:00:00.123Z n1/berth-web-d1 stderr  oops"
        );
        let json = Show {
            json: true,
            timestamps: true,
        };
        assert!(json.line(&e).starts_with('{'));
    }
}
