//! `berth nodes`: the nodes, their liveness as the coordinator sees it (`ready`, `suspect`,
//! `down`), whether they are cordoned, their labels and last heartbeat; `berth nodes
//! cordon|uncordon|drain <node>`.

use anyhow::Result;
use berth_protocol::api::NodeView;
use reqwest::Method;

use super::args::{NodesArgs, NodesCmd};
use super::http::Client;
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

fn status(n: &NodeView) -> String {
    format!("{:?}", n.status).to_lowercase()
}

async fn list(c: &Client, json: bool) -> Result<()> {
    let nodes: Vec<NodeView> = c.get(&["nodes"], &[]).await?;
    print(json, &nodes, |ns| {
        let rows = ns
            .iter()
            .map(|n| {
                let labels: Vec<String> = n
                    .info
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                vec![
                    n.info.name.clone(),
                    status(n),
                    if n.cordoned { "cordoned" } else { "" }.to_string(),
                    n.info.address.clone(),
                    labels.join(","),
                    format!("heartbeat {}", ago(n.info.last_heartbeat)),
                ]
            })
            .collect();
        let cols = [
            Col::Left(20),
            Col::Left(7),
            Col::Left(8),
            Col::Left(16),
            Col::Left(24),
            Col::Left(0),
        ];
        print_table(&cols, None, rows);
    })
}
