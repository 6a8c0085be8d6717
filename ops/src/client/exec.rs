//! `berth exec <app> [--node N] [--replica C] [--timeout D] -- CMD [ARGS...]`: runs a command
//! in a running replica of the app and prints its output as it comes — stdout to stdout, stderr
//! to stderr — then exits with the command's exit code. No stdin, no TTY.
//!
//! `POST /apps/{app}/exec` queues it; `GET /exec/{id}` (SSE, through the one resume loop of
//! [`super::follow`]) brings the output back. With `--json`, every event is printed as one JSON
//! object a line instead (the exit code is still the command's).

use std::io::Write;

use anyhow::Result;
use berth_protocol::api::{CreateExec, ExecStarted};
use berth_protocol::exec::{check_cmd, ExecEntry, OutputStream};
use reqwest::Method;

use super::args::ExecArgs;
use super::http::Client;
use super::{ExitCode, Failed};

pub(super) async fn run(c: &Client, json: bool, a: ExecArgs) -> Result<()> {
    check_cmd(&a.cmd).map_err(Failed)?;
    let timeout_s = match &a.timeout {
        Some(t) => Some(
            berth_protocol::duration::parse_duration("--timeout", t)
                .map_err(Failed)?
                .as_secs()
                .max(1),
        ),
        None => None,
    };
    let body = CreateExec {
        cmd: a.cmd,
        node: a.node,
        container: a.replica,
        timeout_s,
    };
    let started: ExecStarted = c
        .call(Method::POST, &["apps", &a.app, "exec"], Some(&body))
        .await?;
    let mut end = None;
    c.follow(&["exec", &started.id], &[], |ev| {
        if json && ev.event != "error" {
            println!("{}", ev.data);
        }
        match ev.event.as_str() {
            "error" => {
                return Err(Failed(format!(
                    "following the command's output failed: {}",
                    ev.data
                ))
                .into())
            }
            "output" if !json => {
                if let Ok(ExecEntry::Output { stream, data }) = serde_json::from_str(&ev.data) {
                    write_out(stream, &data)?;
                }
            }
            "end" => {
                end = Some(serde_json::from_str::<ExecEntry>(&ev.data)?);
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    })
    .await?;
    match end {
        Some(ExecEntry::End {
            exit_code: Some(code),
            ..
        }) => match exit_status(code) {
            0 => Ok(()),
            n => Err(ExitCode(n).into()),
        },
        Some(ExecEntry::End {
            error: Some(error), ..
        }) => Err(Failed(error).into()),
        _ => Err(Failed("the command's output ended without an exit code".into()).into()),
    }
}

/// Writes a chunk to our own stdout or stderr, at once.
fn write_out(stream: OutputStream, data: &str) -> std::io::Result<()> {
    match stream {
        OutputStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes())?;
            out.flush()
        }
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data.as_bytes())?;
            err.flush()
        }
    }
}

/// The process exit status for the command's exit code: the code itself when a process can
/// exit with it (0 to 255), else 255 (never 0 for a code that is not 0).
fn exit_status(code: i64) -> i32 {
    match code {
        0..=255 => code as i32,
        _ => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_never_turn_into_success() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(127), 127);
        assert_eq!(exit_status(255), 255);
        assert_eq!(exit_status(256), 255);
        assert_eq!(exit_status(-1), 255);
    }
}
