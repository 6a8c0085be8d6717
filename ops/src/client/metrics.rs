//! `berth metrics <app> [--window 15m]`: an app's resource figures — the latest sample of each
//! replica and of the app's total — from `GET /api/v1/apps/{name}/metrics`.

use anyhow::Result;
use berth_protocol::metrics::AppMetrics;

// `main.rs` names the arguments `client::metrics::MetricsArgs`.
pub use super::args::MetricsArgs;
use super::http::Client;
use super::render::{ago, print, print_table, Col};

/// Bytes in binary units, short (`512B`, `12.3MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub(super) async fn run(c: &Client, json: bool, a: MetricsArgs) -> Result<()> {
    let m: AppMetrics = c
        .get(&["apps", &a.app, "metrics"], &[("window", a.window.trim())])
        .await?;
    print(json, &m, table)
}

fn table(m: &AppMetrics) {
    if m.replicas.is_empty() {
        println!(
            "no samples of {} in the last {}s (is it running?)",
            m.app, m.window_s
        );
        return;
    }
    let mut rows = vec![];
    for r in &m.replicas {
        let Some(s) = r.samples.last() else { continue };
        rows.push(vec![
            format!("{}/{}", r.node, r.container),
            r.deployment.clone(),
            format!("{:.1}", s.cpu_pct),
            format!("{} / {}", bytes(s.mem_bytes), bytes(s.mem_limit_bytes)),
            bytes(s.net_rx_bytes),
            bytes(s.net_tx_bytes),
            ago(s.ts),
        ]);
    }
    if let Some(t) = m.total.last() {
        rows.push(vec![
            format!("total ({} replica(s))", t.replicas),
            String::new(),
            format!("{:.1}", t.cpu_pct),
            bytes(t.mem_bytes),
            bytes(t.net_rx_bytes),
            bytes(t.net_tx_bytes),
            ago(t.ts),
        ]);
    }
    let cols = [
        Col::Left(34),
        Col::Left(22),
        Col::Right(7),
        Col::Right(19),
        Col::Right(10),
        Col::Right(10),
        Col::Right(8),
    ];
    let header = [
        "REPLICA",
        "DEPLOYMENT",
        "CPU%",
        "MEM / LIMIT",
        "NET RX",
        "NET TX",
        "SAMPLED",
    ];
    print_table(&cols, Some(&header), rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0MiB");
    }
}
