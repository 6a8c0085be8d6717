//! `berth ps <app>` (or `berth replicas`): what runs the app now — each replica's node,
//! container, role (`serving` in the route, or `standby` kept for an instant rollback), health,
//! release, age and the address every node's Caddy dials.

use anyhow::Result;
use berth_protocol::api::ReplicaView;
use berth_protocol::App;

use super::http::Client;
use super::render::{ago, print, print_table, Col};

pub(super) async fn list(c: &Client, json: bool, app: &str) -> Result<()> {
    let rs: Vec<ReplicaView> = c.get(&["apps", app, "replicas"], &[]).await?;
    if rs.is_empty() && !json {
        // Why nothing runs, in words.
        let a: App = c.get(&["apps", app], &[]).await?;
        if a.stopped {
            println!("{app} is stopped: its containers are kept stopped on their nodes; `berth start {app}` brings it back");
        } else {
            println!("no replicas of {app} run — deploy it with `berth deploy {app}`");
        }
        return Ok(());
    }
    print(json, &rs, |rs| {
        let rows = rs.iter().map(row).collect();
        let cols = [
            Col::Left(16),
            Col::Left(12),
            Col::Left(7),
            Col::Left(7),
            Col::Left(22),
            Col::Left(24),
            Col::Left(8),
            Col::Left(0),
        ];
        let header = [
            "NODE",
            "CONTAINER",
            "ROLE",
            "HEALTH",
            "RELEASE",
            "IMAGE",
            "AGE",
            "UPSTREAM",
        ];
        print_table(&cols, Some(&header), rows);
    })
}

fn row(r: &ReplicaView) -> Vec<String> {
    vec![
        r.node.clone(),
        short_container(&r.container).to_string(),
        r.role.clone(),
        r.health.clone(),
        r.deployment.clone(),
        r.image.clone().unwrap_or_else(|| "-".into()),
        r.since.map(ago).unwrap_or_else(|| "-".into()),
        r.upstream.clone(),
    ]
}

/// A container id as `docker ps` shows it: its first 12 characters.
fn short_container(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_the_short_container_and_a_dash_for_no_image() {
        let r = ReplicaView {
            node: "n1".into(),
            container: "0123456789abcdef0123".into(),
            deployment: "d1".into(),
            image: None,
            role: "serving".into(),
            health: "healthy".into(),
            upstream: "127.0.0.1:32768".into(),
            since: None,
        };
        assert_eq!(
            row(&r),
            [
                "n1",
                "0123456789ab",
                "serving",
                "healthy",
                "d1",
                "-",
                "-",
                "127.0.0.1:32768"
            ]
        );
        assert_eq!(short_container("abc"), "abc");
    }
}
