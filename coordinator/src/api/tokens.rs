//! API tokens with a scope (`POST/GET /api/v1/tokens`, `DELETE /api/v1/tokens/{id}`), the
//! lookup that authenticates a request by one, the failed-authentication allowance per client
//! address, and the audit log.
//!
//! A token's value is 32 random bytes, shown once; Redis keeps only its SHA-256 (a hash field of
//! `berth:tokens`), so the record cannot be turned back into a token. SHA-256 without a salt or
//! stretching is enough here: the value is random and 256 bits long, not a password a person
//! chose.

use actix::prelude::*;
use berth_protocol::api::{AuditEntry, CreateToken, CreatedToken, Scope, TokenInfo};
use berth_protocol::envelope::{decode, encode};
use berth_protocol::{keys, now_ms};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Api;
use crate::error::{Error, Result};

const TOKEN_KIND: &str = "token";

/// Prefix of every token's value, so a leaked one is recognisable (and a secret scanner can
/// match it).
pub const TOKEN_PREFIX: &str = "berth_";

/// Failed authentications one client address may make per window before it gets 429.
pub const AUTH_FAILURES_ALLOWED: u64 = 20;
/// The window of [`AUTH_FAILURES_ALLOWED`], in seconds.
pub const AUTH_FAILURE_WINDOW_S: u64 = 60;

/// Longest and shortest life a token can be given.
const MAX_LIFE_S: u64 = 10 * 365 * 24 * 3600;
const MIN_LIFE_S: u64 = 1;

/// What Redis keeps of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredToken {
    id: String,
    name: String,
    scope: Scope,
    created_at: u64,
    #[serde(default)]
    expires_at: Option<u64>,
}

impl StoredToken {
    fn info(&self, last_used_at: Option<u64>) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            scope: self.scope,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at,
        }
    }
}

/// The hex SHA-256 of a token's value: its key in `berth:tokens`.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token's name: 1 to 64 printable characters.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(format!(
            "name {name:?} must be 1 to 64 printable characters, with no space at either end"
        ));
    }
    Ok(())
}

/// `expires_in` as seconds: a duration from 1 minute to 10 years.
fn life_s(expires_in: &str) -> std::result::Result<u64, String> {
    let d = berth_protocol::duration::parse_duration("expires_in", expires_in)?;
    let s = d.as_secs();
    if !(MIN_LIFE_S..=MAX_LIFE_S).contains(&s) {
        return Err(format!(
            "expires_in {expires_in:?} must be between 1 second and 10 years"
        ));
    }
    Ok(s)
}

/// `POST /api/v1/tokens`.
#[derive(Message)]
#[rtype(result = "Result<CreatedToken>")]
pub struct CreateApiToken(pub CreateToken);

/// `GET /api/v1/tokens`.
#[derive(Message)]
#[rtype(result = "Result<Vec<TokenInfo>>")]
pub struct ListTokens;

/// `DELETE /api/v1/tokens/{id}`.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RevokeToken(pub String);

/// Looks up the token whose value hashes to `hash` (see [`token_hash`]) for a request from
/// client address `addr`, in one round trip with that address's failure count.
#[derive(Message)]
#[rtype(result = "Result<AuthOutcome>")]
pub struct Authenticate {
    pub hash: String,
    pub addr: String,
}

/// What [`Authenticate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The address failed too often: refused for this many more seconds, whatever it sent.
    Blocked(u64),
    /// A valid token.
    Token(TokenInfo),
    /// No such token, or it expired: a failure (count it with [`AuthFailed`]).
    Unknown,
}

/// Token `id` authenticated a request at `at` (epoch ms).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct TouchToken {
    pub id: String,
    pub at: u64,
}

/// Counts one failed authentication of a client address.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct AuthFailed(pub String);

/// Appends an entry to the audit log (its `id` is given by Redis).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RecordAudit(pub AuditEntry);

/// `GET /api/v1/audit`: the newest `limit` entries, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<AuditEntry>>")]
pub struct ListAudit {
    pub limit: usize,
}

impl Handler<CreateApiToken> for Api {
    type Result = ResponseFuture<Result<CreatedToken>>;

    fn handle(&mut self, msg: CreateApiToken, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let mut conn = self.store.conn();
        Box::pin(async move {
            let req = msg.0;
            check_name(&req.name).map_err(Error::BadRequest)?;
            let now = now_ms();
            let expires_at = match &req.expires_in {
                Some(e) => Some(now + life_s(e).map_err(Error::BadRequest)? * 1000),
                None => None,
            };
            let value = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
            let id = format!("tok_{}", hex::encode(rand::random::<[u8; 6]>()));
            let stored = StoredToken {
                id: id.clone(),
                name: req.name,
                scope: req.scope,
                created_at: now,
                expires_at,
            };
            let bytes = encode(TOKEN_KIND, &id, &stored)
                .map_err(|e| Error::Internal(format!("cannot encode the token: {e}")))?;
            let _: () = conn.hset(keys::TOKENS, token_hash(&value), bytes).await?;
            // A token a failover could take back is not given out: its value is shown once,
            // so it is taken out again (nobody else knows it) and the request may simply be
            // sent again.
            if let Err(e) = store
                .confirm(
                    &format!("the new token {id} was written"),
                    "it was taken out again, so no token was made: try again",
                )
                .await
            {
                let _: () = conn.hdel(keys::TOKENS, token_hash(&value)).await?;
                return Err(e);
            }
            Ok(CreatedToken {
                token: value,
                info: stored.info(None),
            })
        })
    }
}

/// Every stored token with its hash, skipping (and logging) unreadable ones.
async fn all(conn: &mut berth_bus::Redis) -> Result<Vec<(String, StoredToken)>> {
    let raw: Vec<(String, Vec<u8>)> = conn.hgetall(keys::TOKENS).await?;
    Ok(raw
        .into_iter()
        .filter_map(
            |(hash, bytes)| match decode::<StoredToken>(&bytes, TOKEN_KIND) {
                Ok(t) => Some((hash, t)),
                Err(e) => {
                    tracing::error!(error = %e, "an API token's record cannot be read");
                    None
                }
            },
        )
        .collect())
}

impl Handler<ListTokens> for Api {
    type Result = ResponseFuture<Result<Vec<TokenInfo>>>;

    fn handle(&mut self, _: ListTokens, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            let tokens = all(&mut conn).await?;
            let used: std::collections::HashMap<String, u64> =
                conn.hgetall(keys::TOKENS_LAST_USED).await?;
            let mut out: Vec<TokenInfo> = tokens
                .into_iter()
                .map(|(_, t)| t.info(used.get(&t.id).copied()))
                .collect();
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }
}

impl Handler<RevokeToken> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: RevokeToken, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let mut conn = self.store.conn();
        Box::pin(async move {
            let id = msg.0;
            let Some((hash, _)) = all(&mut conn).await?.into_iter().find(|(_, t)| t.id == id)
            else {
                return Err(Error::NotFound(format!("token {id:?} not found")));
            };
            let _: () = redis::pipe()
                .atomic()
                .hdel(keys::TOKENS, hash)
                .ignore()
                .hdel(keys::TOKENS_LAST_USED, &id)
                .ignore()
                .query_async(&mut conn)
                .await?;
            store
                .confirm(
                    &format!("token {id} was revoked"),
                    "a failover of Redis now could bring it back: revoke it again if `berth tokens list` shows it",
                )
                .await
        })
    }
}

impl Handler<Authenticate> for Api {
    type Result = ResponseFuture<Result<AuthOutcome>>;

    fn handle(&mut self, msg: Authenticate, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            let key = keys::auth_failures(&msg.addr);
            let (failures, ttl, raw): (Option<u64>, i64, Option<Vec<u8>>) = redis::pipe()
                .get(&key)
                .ttl(&key)
                .hget(keys::TOKENS, &msg.hash)
                .query_async(&mut conn)
                .await?;
            if failures.unwrap_or(0) >= AUTH_FAILURES_ALLOWED && ttl > 0 {
                return Ok(AuthOutcome::Blocked(ttl as u64));
            }
            let Some(bytes) = raw else {
                return Ok(AuthOutcome::Unknown);
            };
            let t: StoredToken = decode(&bytes, TOKEN_KIND)
                .map_err(|e| Error::Internal(format!("an API token's record: {e}")))?;
            if t.expires_at.is_some_and(|at| at <= now_ms()) {
                return Ok(AuthOutcome::Unknown);
            }
            Ok(AuthOutcome::Token(t.info(None)))
        })
    }
}

impl Handler<TouchToken> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: TouchToken, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            let _: () = conn.hset(keys::TOKENS_LAST_USED, msg.id, msg.at).await?;
            Ok(())
        })
    }
}

impl Handler<AuthFailed> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: AuthFailed, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            super::webhooks::failed(
                &mut conn,
                &keys::auth_failures(&msg.0),
                AUTH_FAILURE_WINDOW_S,
            )
            .await
        })
    }
}

impl Handler<RecordAudit> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: RecordAudit, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            let e = msg.0;
            let _: String = redis::cmd("XADD")
                .arg(keys::AUDIT)
                .arg("MAXLEN")
                .arg("~")
                .arg(keys::AUDIT_MAXLEN)
                .arg("*")
                .arg("at")
                .arg(e.at)
                .arg("token_id")
                .arg(&e.token_id)
                .arg("token_name")
                .arg(&e.token_name)
                .arg("action")
                .arg(&e.action)
                .arg("target")
                .arg(&e.target)
                .arg("method")
                .arg(&e.method)
                .arg("path")
                .arg(&e.path)
                .arg("status")
                .arg(e.status)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }
}

impl Handler<ListAudit> for Api {
    type Result = ResponseFuture<Result<Vec<AuditEntry>>>;

    fn handle(&mut self, msg: ListAudit, _: &mut Context<Self>) -> Self::Result {
        let mut conn = self.store.conn();
        Box::pin(async move {
            let reply: redis::streams::StreamRangeReply = conn
                .xrevrange_count(keys::AUDIT, "+", "-", msg.limit)
                .await?;
            Ok(reply
                .ids
                .into_iter()
                .map(|e| {
                    let s = |k: &str| e.get::<String>(k).unwrap_or_default();
                    AuditEntry {
                        at: e.get::<u64>("at").unwrap_or(0),
                        token_id: s("token_id"),
                        token_name: s("token_name"),
                        action: s("action"),
                        target: s("target"),
                        method: s("method"),
                        path: s("path"),
                        status: e.get::<u16>("status").unwrap_or(0),
                        id: e.id,
                    }
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lives_are_checked_with_a_sentence() {
        assert!(check_name("ci deploys").is_ok());
        for bad in ["", " x", "a\nb", &"n".repeat(65)] {
            assert!(check_name(bad).unwrap_err().contains("1 to 64"), "{bad:?}");
        }
        assert_eq!(life_s("30d").unwrap(), 30 * 86400);
        assert!(life_s("0s").unwrap_err().contains("between 1 second"));
        assert!(life_s("soon").unwrap_err().contains("expires_in"));
    }

    #[test]
    fn a_token_is_kept_only_as_its_hash() {
        let h = token_hash("berth_abc");
        assert_eq!(h.len(), 64);
        assert!(!h.contains("abc"));
        assert_eq!(h, token_hash("berth_abc"));
        assert_ne!(h, token_hash("berth_abd"));
    }
}
