//! `EventIngest`: folds the nodes' events (`berth:events`) into deployment records.
//!
//! It reads through the consumer group `coordinator` on a connection of its own (XREADGROUP
//! BLOCK would stall every other command on a shared one), first re-reading whatever it had been
//! given but not acknowledged before a restart, then new entries. An entry is acknowledged only
//! after the `Ledger` applied it, so a crash in between means redelivery, which the ledger's
//! forward-only rule makes harmless.

use std::time::Duration;

use actix::prelude::*;
use berth_protocol::envelope::{decode, STREAM_FIELD};
use berth_protocol::{keys, Event, EVENT_KIND};
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::error::Result;
use crate::ledger::{Ledger, Transition};

const CONSUMER: &str = "coordinator";

pub struct EventIngest {
    redis_url: String,
    ledger: Addr<Ledger>,
}

impl EventIngest {
    pub fn new(redis_url: String, ledger: Addr<Ledger>) -> Self {
        EventIngest { redis_url, ledger }
    }
}

impl Actor for EventIngest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (url, ledger) = (self.redis_url.clone(), self.ledger.clone());
        ctx.spawn(
            async move {
                loop {
                    if let Err(e) = run(&url, &ledger).await {
                        tracing::warn!(error = %e, "event ingest failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            .into_actor(self),
        );
    }
}

async fn run(url: &str, ledger: &Addr<Ledger>) -> Result<()> {
    let mut conn = crate::store::connect_blocking(url).await?;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::EVENTS)
        .arg(keys::EVENTS_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e.into());
        }
    }
    // "0" first: entries delivered to us before but never acknowledged; then ">" for new ones.
    let mut cursor = "0".to_string();
    loop {
        let opts = StreamReadOptions::default()
            .group(keys::EVENTS_GROUP, CONSUMER)
            .count(100)
            .block(5_000);
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg(&opts)
            .arg("STREAMS")
            .arg(keys::EVENTS)
            .arg(&cursor)
            .query_async(&mut conn)
            .await?;
        let entries: Vec<_> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if cursor == "0" && entries.is_empty() {
            cursor = ">".into();
            continue;
        }
        for entry in entries {
            if let Some(bytes) = entry.get::<Vec<u8>>(STREAM_FIELD) {
                match decode::<Event>(&bytes, EVENT_KIND) {
                    Ok(ev) => apply(ledger, ev).await?,
                    Err(e) => {
                        tracing::warn!(entry = %entry.id, error = %e, "skipping undecodable event")
                    }
                }
            }
            let _: i64 = redis::cmd("XACK")
                .arg(keys::EVENTS)
                .arg(keys::EVENTS_GROUP)
                .arg(&entry.id)
                .query_async(&mut conn)
                .await?;
        }
    }
}

async fn apply(ledger: &Addr<Ledger>, ev: Event) -> Result<()> {
    match ev {
        Event::Deployment {
            deployment_id,
            node,
            status,
            commit,
            commit_message,
            commit_author,
            image,
            container,
            error,
            at,
        } => {
            ledger
                .send(Transition {
                    id: deployment_id,
                    status: Some(status),
                    node: Some(node),
                    commit,
                    commit_message,
                    commit_author,
                    image,
                    container,
                    error,
                    at: Some(at),
                })
                .await??;
        }
        Event::AppRemoved { app, node, .. } => {
            tracing::info!(%app, %node, "app removed from node");
        }
    }
    Ok(())
}
