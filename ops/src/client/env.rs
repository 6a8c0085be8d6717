//! `berth env list|set|unset <app>`: an app's variables through `/api/v1/apps/{name}/env`.
//!
//! A value is read from a file (`--from-file`) or stdin, so a secret never sits in shell
//! history or in `ps`; only a plain value may be given on the command line.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result};
use berth_protocol::api::{EnvChange, EnvVar, PutEnv};
use reqwest::Method;

use super::args::{EnvCmd, EnvSetArgs};
use super::http::Client;
use super::render::{print, print_table, Col};
use super::Failed;

pub(super) async fn run(c: &Client, json: bool, cmd: EnvCmd) -> Result<()> {
    match cmd {
        EnvCmd::List { app } => list(c, json, &app).await,
        EnvCmd::Set(a) => set(c, json, a).await,
        EnvCmd::Unset { app, key, deploy } => {
            let query: &[(&str, &str)] = if deploy { &[("deploy", "true")] } else { &[] };
            let change: EnvChange = c
                .call_with_query(
                    Method::DELETE,
                    &["apps", &app, "env", &key],
                    query,
                    None::<&()>,
                )
                .await?;
            print(json, &change, |ch| println!("{}", ch.message))
        }
    }
}

/// `berth env list`: KEY, SCOPE, SECRET, VALUE (`(secret)` for a secret).
async fn list(c: &Client, json: bool, app: &str) -> Result<()> {
    let vars: Vec<EnvVar> = c.get(&["apps", app, "env"], &[]).await?;
    print(json, &vars, |vars| {
        if vars.is_empty() {
            println!("{app} has no variables: `berth env set {app} KEY` sets one");
            return;
        }
        let rows = vars
            .iter()
            .map(|v| {
                vec![
                    v.key.clone(),
                    v.scope.as_str().to_string(),
                    if v.secret { "yes" } else { "no" }.to_string(),
                    match &v.value {
                        Some(value) => super::render::for_output(value).into_owned(),
                        None => "(secret)".to_string(),
                    },
                ]
            })
            .collect();
        let cols = [Col::Left(0), Col::Left(7), Col::Left(6), Col::Left(0)];
        print_table(&cols, Some(&["KEY", "SCOPE", "SECRET", "VALUE"]), rows);
    })
}

/// `berth env set`.
async fn set(c: &Client, json: bool, a: EnvSetArgs) -> Result<()> {
    let value = value_of(&a)?;
    let body = PutEnv {
        value,
        scope: Some(a.scope),
        secret: Some(a.secret),
        deploy: a.deploy.then_some(true),
    };
    let change: EnvChange = c
        .call(Method::PUT, &["apps", &a.app, "env", &a.key], Some(&body))
        .await?;
    print(json, &change, |ch| println!("{}", ch.message))
}

/// The value to set: the file's, the argument's (plain only) or stdin's.
fn value_of(a: &EnvSetArgs) -> Result<String> {
    match (&a.from_file, &a.value) {
        (Some(_), Some(_)) => Err(Failed(
            "give the value either after KEY or with --from-file, not both".into(),
        )
        .into()),
        (Some(p), None) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?;
            Ok(chomp(text))
        }
        (None, Some(_)) if a.secret => Err(Failed(
            "a secret's value is never taken from the command line (shell history and `ps` would keep it): give it on stdin or with --from-file".into(),
        )
        .into()),
        (None, Some(v)) => Ok(v.clone()),
        (None, None) => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("enter the value of {}, then press Ctrl-D:", a.key);
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .context("reading the value from stdin")?;
            Ok(chomp(text))
        }
    }
}

/// Drops one trailing newline (`\n` or `\r\n`), which a file or `echo` adds.
fn chomp(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(chomp("abc\n".into()), "abc");
        assert_eq!(chomp("abc\r\n".into()), "abc");
        assert_eq!(chomp("abc\n\n".into()), "abc\n");
        assert_eq!(chomp("abc".into()), "abc");
    }
}
