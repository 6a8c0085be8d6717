//! Releases: the images an app can roll back to, and the index that keeps them.
//!
//! A release is an image that served the app. Two sorted sets index them: `app_releases(app)`
//! (image → when it last started serving) and `release_deployments(app, image)` (the
//! deployments that served it → when each succeeded). The Ledger adds to both (and caps the
//! release's list of deployments) in the same script that makes a deployment `succeeded`
//! ([`index_commands`]), and then trims the index to the app's `keep_releases` ([`trim`]; in
//! that same script, [`trim_command`], when the Ledger knows the `keep_releases` the
//! deployment's job was made with). So:
//! - retention counts distinct images: rolling back and forth between two releases
//!   re-activates them and never pushes a third out;
//! - a rollback may name any deployment whose image is retained;
//! - the images a node must keep when it prunes ([`images_to_keep`]) are exactly the releases
//!   the API offers once the deployment succeeds;
//! - every read is a fixed number of round trips, however many deployments an app has had.

use berth_protocol::{keys, App, Deployment, DeploymentStatus, Release};
use redis::AsyncCommands;

use crate::error::{Error, Result};
use crate::store::Store;

/// How many deployments are remembered per release (the newest).
const DEPLOYMENTS_PER_RELEASE: isize = 100;

/// The index changes that go with writing `d`: none unless it is a succeeded deployment with
/// an image.
pub fn index_commands(d: &Deployment) -> Vec<redis::Cmd> {
    let (DeploymentStatus::Succeeded, Some(image)) = (d.status, &d.image) else {
        return Vec::new();
    };
    let at = d.finished_at.unwrap_or(d.created_at);
    let mut activate = redis::cmd("ZADD");
    activate.arg(keys::app_releases(&d.app)).arg(at).arg(image);
    let mut served = redis::cmd("ZADD");
    served
        .arg(keys::release_deployments(&d.app, image))
        .arg(at)
        .arg(&d.id);
    // Only this release's list grew: it keeps its newest DEPLOYMENTS_PER_RELEASE.
    let mut cap = redis::cmd("ZREMRANGEBYRANK");
    cap.arg(keys::release_deployments(&d.app, image))
        .arg(0)
        .arg(-DEPLOYMENTS_PER_RELEASE - 1);
    vec![activate, served, cap]
}

/// [`trim`] as a pseudo-command of a record's write (`__trim_releases`, run by the store's
/// `COMMIT` script after the write's other commands): the success of a deployment whose app's
/// `keep_releases` the Ledger knows trims the index in its own write.
pub fn trim_command(app: &str, keep: u32) -> redis::Cmd {
    let mut c = redis::cmd("__trim_releases");
    c.arg(keys::app_releases(app))
        .arg(keep)
        .arg(keys::release_deployments(app, ""));
    c
}

/// Drops from the index the images beyond the newest `keep`, with their lists of deployments.
/// (Each release's list is capped at [`DEPLOYMENTS_PER_RELEASE`] as it grows, in the write of
/// the deployment that served it: [`index_commands`].)
pub async fn trim(store: &Store, app: &str, keep: u32) -> Result<()> {
    let mut c = store.conn();
    let old: Vec<String> = c
        .zrevrange(keys::app_releases(app), keep as isize, -1)
        .await?;
    if old.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for image in &old {
        pipe.zrem(keys::app_releases(app), image)
            .ignore()
            .del(keys::release_deployments(app, image))
            .ignore();
    }
    let _: () = pipe.query_async(&mut c).await?;
    Ok(())
}

/// The app's retained images with when each last started serving, newest first, `n` at most.
async fn newest_images(store: &Store, app: &str, n: usize) -> Result<Vec<(String, f64)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    Ok(store
        .conn()
        .zrevrange_withscores(keys::app_releases(app), 0, n as isize - 1)
        .await?)
}

/// The images of the app's newest `n` releases.
pub async fn retained_images(store: &Store, app: &str, n: usize) -> Result<Vec<String>> {
    Ok(newest_images(store, app, n)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// What a node must keep when a deployment succeeds (besides the new build's image): the
/// `keep` releases the index will hold then. `retained` is the index now, newest first; a
/// rollback's `image` moves to the front instead of taking a second place.
pub fn images_to_keep(retained: Vec<String>, image: Option<&str>, keep: usize) -> Vec<String> {
    let mut out: Vec<String> = image.map(String::from).into_iter().collect();
    // A deploy's new image is not known yet; it takes one of the `keep` places.
    let places = if image.is_some() {
        keep
    } else {
        keep.saturating_sub(1)
    };
    for i in retained {
        if out.len() >= places {
            break;
        }
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// An app's releases, newest first: each retained image once, with the deployments that served
/// it. The first is the one serving now.
pub async fn releases(store: &Store, app: &App) -> Result<Vec<Release>> {
    let images = newest_images(store, &app.name, app.keep_releases as usize).await?;
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (image, _) in &images {
        pipe.zrevrange(keys::release_deployments(&app.name, image), 0, -1);
    }
    let served: Vec<Vec<String>> = pipe.query_async(&mut store.conn()).await?;
    // The deployment that first released each image carries its commit; the newest one its
    // settings (a restart may have changed them since).
    let mut wanted: Vec<String> = served
        .iter()
        .map(|ids| ids.last().cloned().unwrap_or_default())
        .collect();
    wanted.extend(served.iter().filter_map(|ids| ids.first().cloned()));
    wanted.sort();
    wanted.dedup();
    let records = store.deployments(&wanted).await?;
    let mut out = Vec::with_capacity(images.len());
    for ((image, at), deployments) in images.into_iter().zip(served) {
        let Some(first) = deployments
            .last()
            .and_then(|id| records.iter().find(|d| &d.id == id))
        else {
            continue;
        };
        let newest = deployments
            .first()
            .and_then(|id| records.iter().find(|d| &d.id == id))
            .unwrap_or(first);
        out.push(Release {
            current: out.is_empty(),
            deployment: first.id.clone(),
            kind: first.kind,
            image,
            commit: first.commit.clone(),
            commit_message: first.commit_message.clone(),
            released_at: at as u64,
            runtime: newest.runtime.clone().or_else(|| first.runtime.clone()),
            deployments,
        });
    }
    Ok(out)
}

/// The release `to` served (any of its deployments may be named), or the one before the
/// current release when `to` is `None`.
pub async fn rollback_target(store: &Store, app: &App, to: Option<&str>) -> Result<Release> {
    let rels = releases(store, app).await?;
    if rels.is_empty() {
        return Err(Error::Conflict(no_release_yet(&app.name)));
    }
    match to {
        Some(to) => rels
            .into_iter()
            .find(|r| r.deployments.iter().any(|d| d == to))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "{to:?} is not a deployment of a release of {} that can be rolled back to (its image is not kept); see `berth releases {}`",
                    app.name, app.name
                ))
            }),
        None => rels.into_iter().nth(1).ok_or_else(|| {
            Error::Conflict(format!(
                "{} has no release before the current one to roll back to (see `berth releases {}`)",
                app.name, app.name
            ))
        }),
    }
}

/// Why an app that never served cannot be rolled back (or restarted).
pub fn no_release_yet(app: &str) -> String {
    format!("app {app} has no release yet: deploy it first with `berth deploy {app}`")
}

const INDEX_MIGRATION: &str = "releases-index-v1";

/// Builds the release index from the deployment records of every app, once per Redis (data
/// written before the index existed).
pub async fn migrate(store: &Store) -> Result<()> {
    let mut c = store.conn();
    if c.sismember(keys::MIGRATIONS, INDEX_MIGRATION).await? {
        return Ok(());
    }
    for app in store.list_apps().await?.iter() {
        let mut ids = store.deployment_ids(&app.name, usize::MAX).await?;
        ids.reverse();
        let mut cmds = Vec::new();
        for chunk in ids.chunks(1000) {
            for d in store.deployments(chunk).await? {
                cmds.extend(index_commands(&d));
            }
        }
        if !cmds.is_empty() {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd).ignore();
            }
            let _: () = pipe.query_async(&mut c).await?;
        }
        trim(store, &app.name, app.keep_releases).await?;
    }
    let _: () = c.sadd(keys::MIGRATIONS, INDEX_MIGRATION).await?;
    tracing::info!("release index built from the deployment records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_deploy_keeps_the_newest_keep_minus_one() {
        assert_eq!(images_to_keep(v(&["c", "b", "a"]), None, 3), v(&["c", "b"]));
        assert_eq!(images_to_keep(v(&["c"]), None, 3), v(&["c"]));
        assert!(images_to_keep(v(&["c"]), None, 1).is_empty());
    }

    #[test]
    fn a_rollback_moves_its_image_to_the_front_without_taking_two_places() {
        // Rolling back to b, which is retained already: c, b, a stay (keep 3).
        assert_eq!(
            images_to_keep(v(&["c", "b", "a"]), Some("b"), 3),
            v(&["b", "c", "a"])
        );
        // Rolling back to a: a, d, c stay; b, the oldest, goes.
        assert_eq!(
            images_to_keep(v(&["d", "c", "b", "a"]), Some("a"), 3),
            v(&["a", "d", "c"])
        );
    }

    #[test]
    fn only_succeeded_deployments_with_an_image_are_indexed() {
        let mut d = crate::ledger::tests::queued();
        d.image = Some("berth/a:d1".into());
        assert!(index_commands(&d).is_empty());
        d.status = DeploymentStatus::Succeeded;
        d.finished_at = Some(5);
        let cmds = index_commands(&d);
        assert_eq!(cmds.len(), 3);
        assert!(cmds[0].get_packed_command().ends_with(b"berth/a:d1\r\n"));
        // The release's list of deployments is capped in the same write.
        assert!(cmds[2]
            .get_packed_command()
            .starts_with(b"*4\r\n$15\r\nZREMRANGEBYRANK\r\n"));
    }
}
