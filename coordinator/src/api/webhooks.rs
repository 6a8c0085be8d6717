//! A verified GitHub `push` delivery (web/ checked the signature over the raw body).
//!
//! Each `X-GitHub-Delivery` deploys at most once: its id is claimed (`SET NX`) before the work,
//! first as `pending` with a short TTL, then marked `done` for a week once the deployments are
//! queued. If queueing fails the claim is released, so GitHub's redelivery (or a retry by hand)
//! does the work; if the coordinator dies in between, the `pending` claim expires on its own.

use actix::prelude::*;
use berth_protocol::secret::open_webhook_secret;
use berth_protocol::{api, keys};

use super::deployments::Queue;
use super::Api;
use crate::error::{Error, Result};
use crate::ledger;
use crate::webhook::{normalize_repo, Push, PushAction, FAILURES_ALLOWED, FAILURE_WINDOW_S};

/// A verified GitHub `push` delivery.
#[derive(Message)]
#[rtype(result = "Result<api::WebhookOutcome>")]
pub struct GithubPush {
    /// `X-GitHub-Delivery`: deduplicated in Redis for a week.
    pub delivery: String,
    pub push: Push,
    /// The app whose own endpoint took it (signed with the app's own secret): only that app
    /// deploys. `None`: the shared endpoint, which deploys every app following the branch that
    /// has no secret of its own.
    pub app: Option<String>,
}

/// The webhook secret of app `.0`'s own endpoint, opened; `None` when the app has none.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<u8>>>")]
pub struct AppWebhookSecret(pub String);

impl Handler<AppWebhookSecret> for Api {
    type Result = ResponseFuture<Result<Option<Vec<u8>>>>;

    fn handle(&mut self, msg: AppWebhookSecret, _: &mut Context<Self>) -> Self::Result {
        let (store, key) = (self.store.clone(), self.secret_key.clone());
        Box::pin(async move {
            let app = super::load_app(&store, &msg.0).await?;
            if !app.webhook_secret {
                return Ok(None);
            }
            let Some(sealed) = store.get_webhook_secret(&app.name).await? else {
                return Ok(None);
            };
            open_webhook_secret(&key, &app.name, &sealed)
                .map(Some)
                .map_err(|e| {
                    Error::Unreadable(format!(
                        "the webhook secret of app {} cannot be opened ({e}): set it again",
                        app.name
                    ))
                })
        })
    }
}

/// Whether a client address used up its failed signatures: the seconds left in its window when
/// it did. Counted in Redis, so every API process of a fleet shares the count and a restart does
/// not reset it.
#[derive(Message)]
#[rtype(result = "Result<Option<u64>>")]
pub struct SignatureBlocked(pub String);

/// Counts one failed signature of a client address.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SignatureFailed(pub String);

impl Handler<SignatureBlocked> for Api {
    type Result = ResponseFuture<Result<Option<u64>>>;

    fn handle(&mut self, msg: SignatureBlocked, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            blocked(&mut conn, &keys::webhook_failures(&msg.0), FAILURES_ALLOWED).await
        })
    }
}

impl Handler<SignatureFailed> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: SignatureFailed, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            failed(&mut conn, &keys::webhook_failures(&msg.0), FAILURE_WINDOW_S).await
        })
    }
}

/// Seconds left of the window of failure counter `key` once it holds `allowed` failures or
/// more; `None` while the client may still try.
async fn blocked(conn: &mut berth_bus::Redis, key: &str, allowed: u64) -> Result<Option<u64>> {
    let (count, ttl): (Option<u64>, i64) =
        redis::pipe().get(key).ttl(key).query_async(conn).await?;
    Ok((count.unwrap_or(0) >= allowed && ttl > 0).then_some(ttl as u64))
}

/// Counts one failure in counter `key`. The window starts at the first failure (SET NX with
/// the TTL), and is not extended.
pub(super) async fn failed(conn: &mut berth_bus::Redis, key: &str, window_s: u64) -> Result<()> {
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(key)
        .arg(0)
        .arg("EX")
        .arg(window_s)
        .arg("NX")
        .ignore()
        .incr(key, 1)
        .ignore()
        .query_async(conn)
        .await?;
    Ok(())
}

/// How long a delivery stays claimed while it is handled, should the coordinator die before it
/// marks the delivery done or releases it.
const PENDING_TTL_S: u64 = 60;
const PENDING: &str = "pending";
const DONE: &str = "done";

/// The first line of a commit message.
fn subject(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn outcome(message: String) -> api::WebhookOutcome {
    api::WebhookOutcome {
        deployments: Vec::new(),
        message,
    }
}

impl Handler<GithubPush> for Api {
    type Result = ResponseFuture<Result<api::WebhookOutcome>>;

    fn handle(&mut self, msg: GithubPush, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        Box::pin(async move {
            let store = &q.store;
            let key = keys::webhook_delivery(&msg.delivery);
            if !store.claim_once(&key, PENDING, PENDING_TTL_S).await? {
                return Ok(outcome(format!(
                    "delivery {} was handled before; nothing queued",
                    msg.delivery
                )));
            }
            // An app's own endpoint and the shared one may both get a push (two hooks on one
            // repository): each claims it for itself.
            let scope = match &msg.app {
                Some(app) => format!("{}@{app}", msg.push.digest()),
                None => msg.push.digest(),
            };
            let push_key = keys::webhook_push(&scope);
            let claimed = match store.claim_once(&push_key, PENDING, PENDING_TTL_S).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    release(store, &key, &msg.delivery).await;
                    return Err(e);
                }
            };
            if !claimed {
                done(store, &key, &msg.delivery).await;
                return Ok(outcome(format!(
                    "this push ({} at {}) was handled before under another delivery id; nothing queued",
                    msg.push.git_ref,
                    &msg.push.after[..msg.push.after.len().min(12)]
                )));
            }
            match deploy_push(&q, &msg.push, msg.app.as_deref()).await {
                // Queued on the primary: a redelivery finds the delivery handled there, or, if
                // the primary failed over and lost it, handles it again.
                Err(e @ Error::Unreplicated(_)) => {
                    done(store, &key, &msg.delivery).await;
                    done(store, &push_key, &msg.delivery).await;
                    Err(e)
                }
                Ok(outcome) => {
                    done(store, &key, &msg.delivery).await;
                    done(store, &push_key, &msg.delivery).await;
                    Ok(outcome)
                }
                Err(e) => {
                    release(store, &key, &msg.delivery).await;
                    release(store, &push_key, &msg.delivery).await;
                    Err(e)
                }
            }
        })
    }
}

/// Marks a claim done for the dedupe window.
async fn done(store: &crate::store::Store, key: &str, delivery: &str) {
    if let Err(e) = store.set_marker(key, DONE, keys::MARKER_TTL_S).await {
        tracing::warn!(%delivery, %key, error = %e,
            "could not mark the delivery done; its claim expires in {PENDING_TTL_S} s");
    }
}

/// Releases a claim, so a redelivery does the work.
async fn release(store: &crate::store::Store, key: &str, delivery: &str) {
    if let Err(e) = store.delete_key(key).await {
        tracing::warn!(%delivery, %key, error = %e,
            "could not release the delivery's claim; it expires in {PENDING_TTL_S} s");
    }
}

/// Queues a deployment of the pushed commit for every app that follows its branch: `only` that
/// app (its own endpoint), or every app without a secret of its own (the shared endpoint).
async fn deploy_push(q: &Queue, push: &Push, only: Option<&str>) -> Result<api::WebhookOutcome> {
    let (branch, commit) = match push.action() {
        PushAction::Ignore(reason) => return Ok(outcome(reason)),
        PushAction::Deploy { branch, commit } => (branch, commit),
    };
    let repo_keys = push.repo_keys();
    let mut queued = Vec::new();
    let mut unreplicated = Vec::new();
    for app in q.store.list_apps().await?.iter() {
        let scoped = match only {
            Some(name) => app.name == name,
            None => !app.webhook_secret,
        };
        if !scoped
            || app.branch != branch
            || !app.auto_deploy
            || app.stopped
            || !repo_keys.contains(&normalize_repo(&app.repo))
        {
            continue;
        }
        let head = push.head_commit.as_ref();
        let create = ledger::Create {
            app: app.name.clone(),
            git_ref: Some(commit.clone()),
            commit_message: head.map(|h| subject(&h.message)),
            commit_author: head
                .and_then(|h| h.author.as_ref())
                .map(|a| format!("{} <{}>", a.name, a.email)),
            ..Default::default()
        };
        // The list is as fresh as a read of the app (`Store::list_apps`): it is placed with it.
        let d = q.deployment_of(create, Some(app.clone()), None).await;
        match d {
            Ok(d) => queued.push(d.id),
            // Queued on the primary: the other apps are queued too before the delivery is
            // answered (and marked handled).
            Err(Error::Unreplicated(why)) => unreplicated.push(why),
            Err(e) => return Err(e),
        }
    }
    if !unreplicated.is_empty() {
        return Err(Error::Unreplicated(unreplicated.join("; ")));
    }
    let message = if queued.is_empty() {
        match only {
            Some(name) => format!(
                "app {name} does not follow this repository's branch {branch} (or auto_deploy is off, or it is stopped); nothing queued"
            ),
            None => format!(
                "no app with auto_deploy and no webhook secret of its own follows this repository's branch {branch}"
            ),
        }
    } else {
        format!(
            "queued {} deployment(s) of {}",
            queued.len(),
            &commit[..commit.len().min(12)]
        )
    };
    Ok(api::WebhookOutcome {
        deployments: queued,
        message,
    })
}
