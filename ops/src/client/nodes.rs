//! `berth nodes`: the nodes, their liveness as the coordinator sees it, and their last heartbeat.

use anyhow::Result;
use berth_protocol::api::NodeView;

use super::http::Client;
use super::render::{ago, print, print_table, Col};

pub(super) async fn run(c: &Client, json: bool) -> Result<()> {
    let nodes: Vec<NodeView> = c.get(&["nodes"], &[]).await?;
    print(json, &nodes, |ns| {
        let rows = ns
            .iter()
            .map(|n| {
                vec![
                    n.info.name.clone(),
                    format!("{:?}", n.status).to_lowercase(),
                    n.info.address.clone(),
                    format!("heartbeat {}", ago(n.info.last_heartbeat)),
                ]
            })
            .collect();
        let cols = [Col::Left(20), Col::Left(6), Col::Left(16), Col::Left(0)];
        print_table(&cols, None, rows);
    })
}
