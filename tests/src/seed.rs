//! Records written straight into a cluster's Redis, as the coordinator stores them: many apps or
//! deployments at once for the listing test and benchmark, without building anything.

use anyhow::Result;
use berth_protocol::envelope::{encode, kind};
use berth_protocol::{keys, App, Deployment};
use serde_json::json;

use crate::Cluster;

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

impl Cluster {
    /// Writes `n` copies of `template` named `<prefix>-<i>` (each with its own domain) and adds
    /// them to the app set; returns their names.
    pub fn seed_apps(&self, template: &App, prefix: &str, n: usize) -> Result<Vec<String>> {
        let mut cmds = Vec::with_capacity(n + 1);
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let mut a = template.clone();
            a.name = format!("{prefix}-{i}");
            a.domains = vec![format!("{}.localhost", a.name)];
            let record = encode(kind::APP, &a.name, &a)?;
            cmds.push(cmd(&[b"SET", keys::app(&a.name).as_bytes(), &record]));
            names.push(a.name);
        }
        let mut sadd = vec![b"SADD".to_vec(), keys::APPS.as_bytes().to_vec()];
        sadd.extend(names.iter().map(|n| n.as_bytes().to_vec()));
        cmds.push(sadd);
        // Written behind the change log's back: raise its floor, so a coordinator's cached list
        // is read again in full.
        cmds.push(cmd(&[
            b"EVAL",
            b"redis.call('SET', KEYS[2], redis.call('INCR', KEYS[1]))",
            b"2",
            keys::APPS_VERSION.as_bytes(),
            keys::APPS_CHANGES_FLOOR.as_bytes(),
        ]));
        self.redis_pipe(&cmds)?;
        Ok(names)
    }

    /// Writes `n` finished (failed) deployments of `app`, created at 1,000 + i ms, into its
    /// records and its index.
    pub fn seed_deployments(&self, app: &str, n: usize) -> Result<()> {
        let mut cmds = Vec::with_capacity(2 * n);
        for i in 0..n {
            let d: Deployment = serde_json::from_value(json!({
                "id": format!("dseed{i}"), "app": app, "status": "failed", "ref": null,
                "commit": null, "image": null, "node": null, "container": null,
                "created_at": 1_000 + i, "started_at": null, "finished_at": null,
                "error": "seeded"
            }))?;
            let record = encode(kind::DEPLOYMENT, &d.id, &d)?;
            cmds.push(cmd(&[b"SET", keys::deployment(&d.id).as_bytes(), &record]));
            cmds.push(cmd(&[
                b"ZADD",
                keys::app_deployments(app).as_bytes(),
                d.created_at.to_string().as_bytes(),
                d.id.as_bytes(),
            ]));
        }
        self.redis_pipe(&cmds)
    }
}
