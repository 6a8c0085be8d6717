//! `berth nodes`: the nodes, their liveness as the coordinator sees it (`ready`, `suspect`,
//! `down`), whether they are cordoned, their labels and last heartbeat; `berth nodes
//! cordon|uncordon|drain <node>`.

use anyhow::Result;
use berth_protocol::api::{NodeView, RedisView};
use reqwest::Method;

use super::args::{NodesArgs, NodesCmd};
use super::http::Client;
use super::metrics::bytes;
use super::render::{ago, print, print_table, Col};

pub(super) async fn run(c: &Client, json: bool, a: NodesArgs) -> Result<()> {
    let (node, verb) = match a.cmd {
        None => return list(c, json).await,
        Some(NodesCmd::Cordon { node }) => (node, "cordon"),
        Some(NodesCmd::Uncordon { node }) => (node, "uncordon"),
        Some(NodesCmd::Drain { node }) => return drain(c, json, &node).await,
    };
    let view: NodeView = c
        .call(Method::POST, &["nodes", &node, verb], None::<&()>)
        .await?;
    print(json, &view, |v| {
        let state = if v.cordoned { "cordoned" } else { "uncordoned" };
        println!("node {} {state} ({})", v.info.name, status(v));
    })
}

/// What `POST /nodes/{name}/drain` answers: the node, and the deployments moving its replicas.
#[derive(serde::Serialize, serde::Deserialize)]
struct Drained {
    #[serde(flatten)]
    node: NodeView,
    deployments: Vec<String>,
}

async fn drain(c: &Client, json: bool, node: &str) -> Result<()> {
    let d: Drained = c
        .call(Method::POST, &["nodes", node, "drain"], None::<&()>)
        .await?;
    print(json, &d, |d| {
        println!(
            "node {} cordoned; moving {} replica(s): {}",
            d.node.info.name,
            d.deployments.len(),
            d.deployments.join(" ")
        );
        println!("follow each with `berth log <id> -f`");
    })
}

/// `redis: primary 10.0.0.10:6379; replica 10.0.0.11:6379 online, lag 0 s, 0 B behind`.
fn redis_line(r: &RedisView) -> String {
    let role = match r.role.as_str() {
        "master" => "primary".to_string(),
        "slave" => "a REPLICA (writes fail until the coordinator reaches the new primary)".into(),
        other => other.to_string(),
    };
    let replicas = match r.replicas.as_slice() {
        [] => "no replica".to_string(),
        rs => rs
            .iter()
            .map(|x| {
                format!(
                    "replica {} {}, lag {} s, {} behind",
                    x.addr,
                    x.state,
                    x.lag_s,
                    bytes(x.behind_bytes)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    format!("redis: {} is {role}; {replicas}", r.addr)
}

fn status(n: &NodeView) -> String {
    format!("{:?}", n.status).to_lowercase()
}

async fn list(c: &Client, json: bool) -> Result<()> {
    let nodes: Vec<NodeView> = c.get(&["nodes"], &[]).await?;
    // Below the table, where Redis stands (`--json` keeps the list alone;
    // `GET /api/v1/redis` answers it; a coordinator older than that endpoint is skipped).
    let redis: Option<RedisView> = match json {
        true => None,
        false => c.get(&["redis"], &[]).await.ok(),
    };
    print(json, &nodes, |ns| {
        if ns.is_empty() {
            println!("no nodes yet — start one with `berth node` (or `berth up`)");
            return;
        }
        let rows = ns.iter().map(row).collect();
        let cols = [
            Col::Left(12),
            Col::Left(7),
            Col::Left(8),
            Col::Left(15),
            Col::Right(5),
            Col::Right(17),
            Col::Right(17),
            Col::Left(6),
            Col::Left(0),
        ];
        let header = [
            "NAME",
            "STATUS",
            "CORDON",
            "ADDRESS",
            "CPU%",
            "MEM USED/TOTAL",
            "DISK USED/TOTAL",
            "LABELS",
            "HEARTBEAT",
        ];
        print_table(&cols, Some(&header), rows);
    })?;
    if let Some(r) = &redis {
        println!("{}", redis_line(r));
    }
    Ok(())
}

/// One node's row: name, liveness, cordon, address, host CPU, memory and disk (`-` before the
/// node's first sample), labels, last heartbeat.
fn row(n: &NodeView) -> Vec<String> {
    let labels: Vec<String> = n
        .info
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let used = |total: u64, available: u64| {
        format!(
            "{} / {}",
            bytes(total.saturating_sub(available)),
            bytes(total)
        )
    };
    let (cpu, mem, disk) = match &n.info.host {
        Some(h) => (
            format!("{:.1}", h.cpu_pct),
            used(h.mem_total_bytes, h.mem_available_bytes),
            used(h.disk_total_bytes, h.disk_available_bytes),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    vec![
        n.info.name.clone(),
        status(n),
        if n.cordoned { "cordoned" } else { "-" }.to_string(),
        n.info.address.clone(),
        cpu,
        mem,
        disk,
        if labels.is_empty() {
            "-".into()
        } else {
            labels.join(",")
        },
        ago(n.info.last_heartbeat),
    ]
}

#[cfg(test)]
mod tests {
    use berth_protocol::{HostStats, NodeInfo, NodeStatus};

    use super::*;

    #[test]
    fn a_row_shows_the_host_figures_once_sampled() {
        let mut n = NodeView {
            info: NodeInfo {
                name: "n1".into(),
                address: "10.0.0.1".into(),
                ingress_http: 80,
                ingress_https: None,
                version: "t".into(),
                labels: [("zone".to_string(), "eu".to_string())].into(),
                cpus: 2,
                build_slots: 2,
                engine: None,
                started_at: 0,
                last_heartbeat: berth_protocol::now_ms(),
                running_jobs: 0,
                host: None,
            },
            status: NodeStatus::Ready,
            cordoned: true,
        };
        let r = row(&n);
        assert_eq!(r[..4], ["n1", "ready", "cordoned", "10.0.0.1"]);
        assert_eq!(r[4..7], ["-", "-", "-"]);
        assert_eq!(r[7], "zone=eu");
        n.info.host = Some(HostStats {
            ts: 0,
            cpu_pct: 12.34,
            mem_total_bytes: 4 << 30,
            mem_available_bytes: 3 << 30,
            disk_total_bytes: 100 << 30,
            disk_available_bytes: 40 << 30,
            containers: 1,
        });
        let r = row(&n);
        assert_eq!(r[4..7], ["12.3", "1.0GiB / 4.0GiB", "60.0GiB / 100.0GiB"]);
    }
}
