//! `berth logs <app> [-f] [-n N] [--since TIME]`: an app's runtime log, every replica on every
//! node merged, as `node/container  line` (one JSON object a line with `--json`).

use anyhow::Result;
use berth_protocol::LogEntry;

use super::args::LogsArgs;
use super::http::Client;

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
    if a.follow {
        query.push(("follow", "1"));
        return c
            .follow(&path, &query, |ev| {
                if let Some(e) = ev.json::<LogEntry>() {
                    print_line(json, &e);
                }
                Ok(true)
            })
            .await;
    }
    query.push(("format", "json"));
    let entries: Vec<LogEntry> = c.get(&path, &query).await?;
    for e in &entries {
        print_line(json, e);
    }
    Ok(())
}

/// One runtime log line: `node/container  line` (JSON with `--json`).
fn print_line(json: bool, e: &LogEntry) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    } else {
        println!(
            "{}/{}  {}",
            e.line.node.as_deref().unwrap_or("?"),
            e.line.container.as_deref().unwrap_or("?"),
            e.line.line
        );
    }
}
