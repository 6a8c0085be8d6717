//! An app's variables as a resource: list, set one, unset one.
//!
//! A plain variable lives in the app record (`env.runtime`, `env.build`); a secret one is only
//! named there (`env.secret`, with its scope) and its value sits in one sealed map per app,
//! `berth:app:<name>:env_secrets`, bound to the app. The coordinator opens that map only here,
//! in memory, to change one value and seal it again. A new secret is stored before the record
//! that names it; a removed one leaves the map after the record stopped naming it. No answer
//! carries a secret value.
//!
//! A change applies at the next deployment; asked to (`deploy`), one is queued at once.

use std::collections::BTreeMap;

use actix::prelude::*;
use berth_protocol::api::{self, EnvChange, EnvVar};
use berth_protocol::secret::{open_env, seal_env, SecretKey};
use berth_protocol::App;

use super::deployments::Queue;
use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::{apps, ledger};

/// `GET /api/v1/apps/{name}/env`.
#[derive(Message)]
#[rtype(result = "Result<Vec<EnvVar>>")]
pub struct ListEnv(pub String);

/// `PUT /api/v1/apps/{name}/env/{KEY}`.
#[derive(Message)]
#[rtype(result = "Result<EnvChange>")]
pub struct PutEnv {
    pub app: String,
    pub key: String,
    pub body: api::PutEnv,
}

/// `DELETE /api/v1/apps/{name}/env/{KEY}`; `deploy`: queue a deployment at once.
#[derive(Message)]
#[rtype(result = "Result<EnvChange>")]
pub struct DeleteEnv {
    pub app: String,
    pub key: String,
    pub deploy: bool,
}

impl Handler<ListEnv> for Api {
    type Result = ResponseFuture<Result<Vec<EnvVar>>>;

    fn handle(&mut self, msg: ListEnv, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(EnvVar::list(&load_app(&store, &msg.0).await?.env)) })
    }
}

/// The app's secret values, opened (empty when it has none).
async fn secrets(store: &Store, key: &SecretKey, app: &str) -> Result<BTreeMap<String, String>> {
    match store.get_env_secrets(app).await? {
        Some(sealed) => open_env(key, app, &sealed).map_err(Error::Internal),
        None => Ok(BTreeMap::new()),
    }
}

/// Stores `values` as the app's sealed secrets (none: the key is deleted).
async fn put_secrets(
    store: &Store,
    key: &SecretKey,
    app: &str,
    values: &BTreeMap<String, String>,
) -> Result<()> {
    let sealed = (!values.is_empty()).then(|| seal_env(key, app, values));
    store.put_env_secrets(app, sealed.as_ref()).await
}

/// `deploy=true` for an app with no repository: there is nothing to build again from; nothing
/// is changed.
fn no_repo_to_deploy(app: &App) -> Error {
    Error::BadRequest(format!(
        "app {} has no repository, so deploy=true has nothing to build: change the variable \
         without it, then deploy the directory with `berth deploy {} --dir DIR`",
        app.name, app.name
    ))
}

/// The answer: the variables now, and the deployment that applies them or how to get one.
async fn answer(q: &Queue, app: App, what: String, deploy: bool) -> Result<EnvChange> {
    let env = EnvVar::list(&app.env);
    if !deploy {
        let how = if app.repo.is_empty() {
            format!("`berth deploy {} --dir DIR`", app.name)
        } else {
            format!("`berth deploy {}` (or ask for deploy=true)", app.name)
        };
        q.store
            .confirm(
                &format!("{what} on app {}", app.name),
                &format!(
                    "look at the variables (`berth env list {}`) and change them again if they are not so",
                    app.name
                ),
            )
            .await?;
        return Ok(EnvChange {
            message: format!("{what}; a redeploy applies it: {how}"),
            env,
            deployment: None,
        });
    }
    let create = ledger::Create {
        app: app.name.clone(),
        ..Default::default()
    };
    let d = q.deployment_of(create, Some(app), None).await?;
    Ok(EnvChange {
        message: format!("{what}; deployment {} is queued to apply it", d.id),
        env,
        deployment: Some(d),
    })
}

impl Handler<PutEnv> for Api {
    type Result = AtomicResponse<Self, Result<EnvChange>>;

    fn handle(&mut self, msg: PutEnv, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        let key = self.secret_key.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let store = &q.store;
                let app = load_app(store, &msg.app).await?;
                let deploy = msg.body.deploy == Some(true);
                if deploy && app.stopped {
                    return Err(super::lifecycle::stopped(&app));
                }
                if deploy && app.repo.is_empty() {
                    return Err(no_repo_to_deploy(&app));
                }
                let was_secret = app.env.secret.contains_key(&msg.key);
                let scope = msg.body.scope.unwrap_or_default();
                let (app, secret) =
                    apps::set_env(app, &msg.key, msg.body).map_err(Error::BadRequest)?;
                let is_secret = secret.is_some();
                if let Some(value) = secret {
                    let mut values = secrets(store, &key, &app.name).await?;
                    values.insert(msg.key.clone(), value);
                    put_secrets(store, &key, &app.name, &values).await?;
                }
                store.put_app(&app, false).await?;
                if was_secret && !is_secret {
                    let mut values = secrets(store, &key, &app.name).await?;
                    values.remove(&msg.key);
                    put_secrets(store, &key, &app.name, &values).await?;
                }
                let what = format!(
                    "{} set ({}{})",
                    msg.key,
                    if is_secret { "secret, " } else { "" },
                    scope.as_str()
                );
                answer(&q, app, what, deploy).await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<DeleteEnv> for Api {
    type Result = AtomicResponse<Self, Result<EnvChange>>;

    fn handle(&mut self, msg: DeleteEnv, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        let key = self.secret_key.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let store = &q.store;
                let mut app = load_app(store, &msg.app).await?;
                if msg.deploy && app.stopped {
                    return Err(super::lifecycle::stopped(&app));
                }
                if msg.deploy && app.repo.is_empty() {
                    return Err(no_repo_to_deploy(&app));
                }
                let was_secret = app.env.secret.contains_key(&msg.key);
                if !app.env.remove(&msg.key) {
                    return Err(Error::NotFound(format!(
                        "app {} has no variable {:?}: `berth env list {}` shows those it has",
                        app.name, msg.key, app.name
                    )));
                }
                app.updated_at = berth_protocol::now_ms();
                store.put_app(&app, false).await?;
                if was_secret {
                    let mut values = secrets(store, &key, &app.name).await?;
                    values.remove(&msg.key);
                    put_secrets(store, &key, &app.name, &values).await?;
                }
                answer(&q, app, format!("{} removed", msg.key), msg.deploy).await
            }
            .into_actor(self),
        ))
    }
}
