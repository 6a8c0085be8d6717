//! `berth tokens create|list|revoke` and `berth audit`: `/api/v1/tokens` and `/api/v1/audit`.

use anyhow::Result;
use berth_protocol::api::{AuditEntry, CreateToken, CreatedToken, Scope, TokenInfo};
use reqwest::Method;

use super::args::{AuditArgs, TokensCmd};
use super::http::Client;
use super::render::{ago, print, print_table, when, Col};

pub(super) async fn run(c: &Client, json: bool, cmd: TokensCmd) -> Result<()> {
    match cmd {
        TokensCmd::Create {
            token_name: name,
            scope,
            expires_in,
        } => {
            let scope: Scope = serde_json::from_value(serde_json::Value::String(scope))?;
            let body = CreateToken {
                name,
                scope,
                expires_in,
            };
            let t: CreatedToken = c.call(Method::POST, &["tokens"], Some(&body)).await?;
            print(json, &t, |t| {
                println!(
                    "created token {} ({}, scope {}{}); its value, shown only now:",
                    t.info.id,
                    t.info.name,
                    t.info.scope,
                    t.info
                        .expires_at
                        .map(|at| format!(", expires {}", when(at)))
                        .unwrap_or_default()
                );
                println!("{}", t.token);
            })
        }
        TokensCmd::List => {
            let ts: Vec<TokenInfo> = c.get(&["tokens"], &[]).await?;
            print(json, &ts, |ts| {
                if ts.is_empty() {
                    println!(
                        "no API tokens besides api.token — `berth tokens create NAME --scope read`"
                    );
                    return;
                }
                let rows = ts
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            super::render::for_output(&t.name).into_owned(),
                            t.scope.to_string(),
                            ago(t.created_at),
                            t.expires_at.map(when).unwrap_or_else(|| "never".into()),
                            t.last_used_at.map(ago).unwrap_or_else(|| "never".into()),
                        ]
                    })
                    .collect();
                let cols = [Col::Left(0); 6];
                print_table(
                    &cols,
                    Some(&["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST USED"]),
                    rows,
                );
            })
        }
        TokensCmd::Revoke { id } => {
            let _: serde_json::Value = c
                .call(Method::DELETE, &["tokens", &id], None::<&()>)
                .await?;
            if json {
                println!("{}", serde_json::json!({"revoked": id}));
            } else {
                println!("revoked token {id}: requests with it get 401 from now on");
            }
            Ok(())
        }
    }
}

/// `berth audit`: TIME, TOKEN, ACTION, TARGET, STATUS, newest first.
pub(super) async fn audit(c: &Client, json: bool, a: AuditArgs) -> Result<()> {
    let limit = a.limit.to_string();
    let es: Vec<AuditEntry> = c.get(&["audit"], &[("limit", &limit)]).await?;
    print(json, &es, |es| {
        if es.is_empty() {
            println!("the audit log is empty: nothing was changed through the API yet");
            return;
        }
        let rows = es
            .iter()
            .map(|e| {
                vec![
                    when(e.at),
                    format!(
                        "{} ({})",
                        super::render::for_output(&e.token_name),
                        e.token_id
                    ),
                    e.action.clone(),
                    super::render::for_output(&e.target).into_owned(),
                    e.status.to_string(),
                ]
            })
            .collect();
        let cols = [Col::Left(0); 5];
        print_table(
            &cols,
            Some(&["TIME", "TOKEN", "ACTION", "TARGET", "STATUS"]),
            rows,
        );
    })
}
