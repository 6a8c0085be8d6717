//! `POST /api/v1/analyze`: what the `auto` (or `static`) build pack would build from a
//! repository — given by URL, or an app's (its repository, branch, context, build pack and
//! port, cloned with its git credential). The work is in [`crate::analyze`].

use actix::prelude::*;
use berth_protocol::api::{self, Analysis};
use berth_protocol::secret::GitCredential;
use berth_protocol::BuildPack;

use super::{load_app, Api};
use crate::error::{Error, Result};

/// `POST /api/v1/analyze`.
#[derive(Message)]
#[rtype(result = "Result<Analysis>")]
pub struct Analyze(pub api::Analyze);

impl Handler<Analyze> for Api {
    type Result = ResponseFuture<Result<Analysis>>;

    fn handle(&mut self, msg: Analyze, _: &mut Context<Self>) -> Self::Result {
        let (store, key, allow_local) = (
            self.store.clone(),
            self.secret_key.clone(),
            self.allow_local_repos,
        );
        let images = self.pack_images.clone();
        Box::pin(async move {
            let r = msg.0;
            let (repo, git_ref, context, pack, static_dir, port, cred) = match (&r.app, &r.repo) {
                (Some(_), Some(_)) => {
                    return Err(Error::BadRequest(
                        "give either repo (a git URL) or app (an app's name), not both".into(),
                    ))
                }
                (None, None) => {
                    return Err(Error::BadRequest(
                        "give repo (a git URL, with ref a branch or tag) or app (an app's name) to analyse".into(),
                    ))
                }
                (None, Some(repo)) => (
                    repo.clone(),
                    r.git_ref.clone(),
                    r.context.clone().unwrap_or_else(|| ".".into()),
                    r.build_pack.unwrap_or(BuildPack::Auto),
                    r.static_dir.clone(),
                    None,
                    None,
                ),
                (Some(name), None) => {
                    let app = load_app(&store, name).await?;
                    // The coordinator opens the stored credential for this clone only.
                    let cred = match store.get_credential(name).await? {
                        Some(sealed) => Some(
                            GitCredential::open(&key, name, &sealed).map_err(Error::Internal)?,
                        ),
                        None => None,
                    };
                    let pack = match (r.build_pack, app.build_pack) {
                        (Some(p), _) => p,
                        // An app building with its Dockerfile: what `auto` would make instead.
                        (None, BuildPack::Dockerfile) => BuildPack::Auto,
                        (None, p) => p,
                    };
                    (
                        app.repo,
                        Some(r.git_ref.clone().unwrap_or(app.branch)),
                        r.context.clone().unwrap_or(app.context),
                        pack,
                        r.static_dir.clone().or(app.static_dir),
                        Some(app.port),
                        cred,
                    )
                }
            };
            crate::analyze::analyze(
                crate::analyze::Request {
                    repo: &repo,
                    git_ref: git_ref.as_deref(),
                    context: &context,
                    pack,
                    static_dir: static_dir.as_deref(),
                    port,
                    credential: cred.as_ref(),
                },
                allow_local,
                &images,
            )
            .await
        })
    }
}
