//! Releases: list them, roll back to one (see [`crate::releases`] for what a release is).

use actix::prelude::*;
use berth_protocol::api;
use berth_protocol::{Deployment, DeploymentKind, Release};

use super::{load_app, Api};
use crate::error::Result;
use crate::ledger;
use crate::releases::{releases, rollback_target};

/// `POST /api/v1/apps/{name}/rollback`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct Rollback(pub String, pub api::Rollback);

/// `GET /api/v1/apps/{name}/releases`, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Release>>")]
pub struct ListReleases(pub String);

impl Handler<ListReleases> for Api {
    type Result = ResponseFuture<Result<Vec<Release>>>;

    fn handle(&mut self, msg: ListReleases, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            releases(&store, &app).await
        })
    }
}

impl Handler<Rollback> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: Rollback, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        Box::pin(async move {
            let app = load_app(&q.store, &msg.0).await?;
            if app.stopped {
                return Err(super::lifecycle::stopped(&app));
            }
            let target = rollback_target(&q.store, &app, msg.1.to.as_deref()).await?;
            let create = ledger::Create {
                app: app.name.clone(),
                kind: DeploymentKind::Rollback,
                // The release's container on the node that served it last, stopped or still
                // draining, is started again when the node still has it.
                rollback_of: match msg.1.to {
                    Some(to) => Some(to),
                    None => target
                        .deployments
                        .first()
                        .cloned()
                        .or(Some(target.deployment)),
                },
                image: Some(target.image),
                commit: target.commit,
                runtime: target.runtime,
                commit_message: target.commit_message,
                ..Default::default()
            };
            q.deployment(create).await
        })
    }
}
