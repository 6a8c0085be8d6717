//! Running a command in one of this node's replicas (`berth exec`, [`berth_protocol::exec`]).
//!
//! The job is claimed first (`berth:exec:<id>:claim`, SET NX): a redelivered job, or one the API
//! gave up on (it claims the exec as `expired` after `PICKUP_S` without a node), never runs. The
//! command runs through Docker's exec API (create, then start attached to stdout and stderr; no
//! stdin, no TTY); what it prints is appended to the exec's stream as it comes — every chunk
//! that is ready in one round trip — and the stream's TTL is renewed with each write. The last
//! entry is the exit code, or why there is none: the container is gone or not running, Docker
//! refused the exec, the timeout passed (the command is killed), or the node shuts down.
//!
//! Exec output is not a log line and does not go through `LogSink`: it is the answer to the
//! operator's own command, read only by the API caller and gone after `KEEP_S`, and the app's
//! git credential (what `LogSink` masks) is never inside a container.

use std::sync::Arc;
use std::time::Duration;

use berth_bus::{Backoff, Redis};
use berth_protocol::exec::{self, ExecEntry, ExecJob, OutputStream};
use berth_protocol::{keys, now_ms};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::{FutureExt, StreamExt};

use crate::containers::LABEL_APP;
use crate::image_build::docker_error_text;
use crate::pipeline::Services;

/// How long the last entry is retried when Redis does not take it.
const END_RETRY_FOR: Duration = Duration::from_secs(10);

/// Runs one exec job to its end entry.
pub async fn run(svc: Arc<Services>, job: ExecJob) {
    let now = now_ms();
    if now > job.pickup_by_ms {
        tracing::info!(exec = %job.exec_id, "exec job picked up after its caller gave up; skipping");
        return;
    }
    let run_until = now + job.timeout_s * 1000;
    let out = Output {
        conn: svc.redis.clone(),
        key: keys::exec_output(&job.exec_id),
        run_until,
    };
    match claim(&svc, &job, run_until).await {
        Ok(true) => {
            // Run only what the caller can be told about: a claim a failover of Redis could
            // lose would let the API report the command expired while it runs.
            if let Err(e) = svc.replicas.confirm().await {
                tracing::warn!(exec = %job.exec_id, error = %e, "exec claim not confirmed by Redis's replicas");
                out.end(ExecEntry::failed(format!(
                    "node {} did not run the command (claiming it: {e})",
                    svc.node
                )))
                .await;
                return;
            }
        }
        Ok(false) => {
            tracing::info!(exec = %job.exec_id, "exec already claimed (redelivered, or expired); skipping");
            return;
        }
        Err(e) => {
            tracing::warn!(exec = %job.exec_id, error = %e, "cannot claim the exec");
            out.end(ExecEntry::failed(format!(
                "node {} cannot reach Redis to start the command: {e}",
                svc.node
            )))
            .await;
            return;
        }
    }
    tracing::info!(exec = %job.exec_id, app = %job.app, container = %job.container, "running a command");
    let end = execute(&svc, &job, &out).await;
    out.end(end).await;
}

async fn claim(svc: &Services, job: &ExecJob, run_until: u64) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(keys::exec_claim(&job.exec_id))
        .arg(format!("node:{}", svc.node))
        .arg("NX")
        .arg("EX")
        .arg(exec::stream_ttl_s(run_until, now_ms()))
        .query_async(&mut svc.redis.clone())
        .await?;
    Ok(set.is_some())
}

/// Runs the command; returns the end entry.
async fn execute(svc: &Services, job: &ExecJob, out: &Output) -> ExecEntry {
    let docker = &svc.docker;
    let short = job.container.get(..12).unwrap_or(&job.container);
    let gone = || {
        ExecEntry::failed(format!(
            "container {short} of app {} is gone from node {}: the replica stopped; see `berth replicas {}`",
            job.app, svc.node, job.app
        ))
    };
    match docker.inspect_container(&job.container, None).await {
        Ok(c) => {
            let app = c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_APP));
            if app.map(String::as_str) != Some(job.app.as_str()) {
                return ExecEntry::failed(format!(
                    "container {short} on node {} is not a replica of app {}",
                    svc.node, job.app
                ));
            }
            if !c.state.and_then(|s| s.running).unwrap_or(false) {
                return ExecEntry::failed(format!(
                    "container {short} of app {} on node {} is not running; see `berth replicas {}`",
                    job.app, svc.node, job.app
                ));
            }
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return gone(),
        Err(e) => return ExecEntry::failed(format!("docker: {}", docker_error_text(&e))),
    }
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        tty: Some(false),
        cmd: Some(job.cmd.clone()),
        ..Default::default()
    };
    let created = match docker.create_exec(&job.container, config).await {
        Ok(c) => c,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return gone(),
        Err(e) => {
            return ExecEntry::failed(format!(
                "docker refused the command: {}",
                docker_error_text(&e)
            ))
        }
    };
    out.write(&[ExecEntry::Started {
        node: svc.node.clone(),
        container: job.container.clone(),
    }])
    .await;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await;
    let mut output = match started {
        Ok(StartExecResults::Attached { output, .. }) => output,
        Ok(StartExecResults::Detached) => {
            return ExecEntry::failed("docker started the command detached")
        }
        Err(e) => {
            return ExecEntry::failed(format!(
                "docker could not start the command: {}",
                docker_error_text(&e)
            ))
        }
    };
    let mut text = Decoders::default();
    // Docker's own message when the program cannot start, which it writes as the output.
    let mut runtime_message: Option<String> = None;
    let mut any_output = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(job.timeout_s);
    let stopped = loop {
        let first = tokio::select! {
            item = output.next() => item,
            () = tokio::time::sleep_until(deadline) => break Some(format!(
                "the command timed out after {}",
                humantime::format_duration(Duration::from_secs(job.timeout_s))
            )),
            () = svc.shutdown.cancelled() => break Some(format!(
                "node {} is shutting down", svc.node
            )),
        };
        let Some(first) = first else { break None };
        // Everything else already there goes in the same round trip.
        let mut items = vec![first];
        while items.len() < 256 {
            match output.next().now_or_never() {
                Some(Some(item)) => items.push(item),
                _ => break,
            }
        }
        let mut entries = Vec::new();
        let mut failed = None;
        for item in items {
            match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    text.push(OutputStream::Stdout, &message, &mut entries)
                }
                Ok(LogOutput::StdErr { message }) => {
                    text.push(OutputStream::Stderr, &message, &mut entries)
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => failed = Some(docker_error_text(&e)),
            }
        }
        if !any_output && !entries.is_empty() {
            any_output = true;
            if let Some(ExecEntry::Output {
                stream: OutputStream::Stdout,
                data,
            }) = entries.first()
            {
                if data.starts_with(RUNTIME_FAILED) {
                    runtime_message = Some(data.clone());
                    entries.remove(0);
                }
            }
        }
        out.write(&entries).await;
        if let Some(e) = failed {
            return ExecEntry::failed(format!("reading the command's output failed: {e}"));
        }
    };
    let mut rest = Vec::new();
    text.finish(&mut rest);
    out.write(&rest).await;
    if let Some(why) = stopped {
        let killed = kill(svc, &created.id).await;
        return ExecEntry::failed(format!("{why}: {killed}"));
    }
    let end = exit_code(svc, &created.id).await;
    match runtime_message {
        Some(message) => {
            let (output, end) = cannot_start(message, end);
            out.write(&[output]).await;
            end
        }
        None => end,
    }
}

/// How Docker's message starts when the program could not be started.
const RUNTIME_FAILED: &str = "OCI runtime exec failed";

/// The program could not start and Docker said why (`message`, written as the command's stdout)
/// with exit code 126: the message goes to stderr, and a program that does not exist exits 127,
/// as in a shell (Docker 20.10 says 126 for both). Anything else: the message was the command's
/// own output after all.
fn cannot_start(message: String, end: ExecEntry) -> (ExecEntry, ExecEntry) {
    match end {
        ExecEntry::End {
            exit_code: Some(126 | 127),
            ..
        } => {
            let missing = message.contains("executable file not found")
                || message.contains("no such file or directory");
            let mut data = message.trim_end().to_string();
            data.push('\n');
            (
                ExecEntry::Output {
                    stream: OutputStream::Stderr,
                    data,
                },
                ExecEntry::End {
                    exit_code: Some(if missing { 127 } else { 126 }),
                    error: None,
                },
            )
        }
        end => (
            ExecEntry::Output {
                stream: OutputStream::Stdout,
                data: message,
            },
            end,
        ),
    }
}

/// The exit code of a finished exec (Docker may report it running for a moment after its
/// output closed).
async fn exit_code(svc: &Services, exec_id: &str) -> ExecEntry {
    let mut last_error = String::new();
    for _ in 0..40 {
        match svc.docker.inspect_exec(exec_id).await {
            Ok(i) if i.running != Some(true) => {
                return match i.exit_code {
                    Some(code) => ExecEntry::End {
                        exit_code: Some(code),
                        error: None,
                    },
                    None => ExecEntry::failed("docker reported no exit code"),
                }
            }
            Ok(_) => {}
            Err(e) => last_error = docker_error_text(&e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ExecEntry::failed(if last_error.is_empty() {
        "the command's output ended but docker still reports it running".to_string()
    } else {
        format!("cannot read the command's exit code: {last_error}")
    })
}

/// Kills a running exec's process (Docker has no API for it: its host pid, which this node sees
/// when it shares the engine's pid namespace). Says what happened.
async fn kill(svc: &Services, exec_id: &str) -> String {
    let pid = match svc.docker.inspect_exec(exec_id).await {
        Ok(i) if i.running == Some(false) => return "the command had ended".into(),
        Ok(i) => i.pid,
        Err(e) => {
            return format!(
                "it may still run (cannot inspect it: {})",
                docker_error_text(&e)
            )
        }
    };
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) else {
        return "it may still run (docker gave no pid)".into();
    };
    use nix::sys::signal::{kill, Signal};
    match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) => "the command was killed".into(),
        Err(e) => format!("it may still run in the container (cannot kill pid {pid}: {e})"),
    }
}

/// The exec's stream: where its entries go.
struct Output {
    conn: Redis,
    key: String,
    /// When the command must end at the latest: the stream's TTL outlives it.
    run_until: u64,
}

impl Output {
    /// Appends `entries` and renews the stream's TTL, in one MULTI; a failure is logged and the
    /// entries dropped (the command goes on).
    async fn write(&self, entries: &[ExecEntry]) -> bool {
        if entries.is_empty() {
            return true;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for e in entries {
            let cmd = pipe
                .cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(exec::MAXLEN)
                .arg("*");
            for (k, v) in e.fields() {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        pipe.cmd("EXPIRE")
            .arg(&self.key)
            .arg(exec::stream_ttl_s(self.run_until, now_ms()))
            .ignore();
        match pipe.query_async::<()>(&mut self.conn.clone()).await {
            Ok(()) => true,
            // While Redis is away the node's connection says so once; the caller's follow
            // fails meanwhile (503), and the coordinator ends the exec if no end comes.
            Err(e) if berth_bus::is_unavailable(&e) => false,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not write {} exec entries", entries.len());
                false
            }
        }
    }

    /// Writes the end entry, retrying for a while: the caller waits for it.
    async fn end(&self, end: ExecEntry) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let give_up = tokio::time::Instant::now() + END_RETRY_FOR;
        let mut conn = self.conn.clone();
        loop {
            if self.write(std::slice::from_ref(&end)).await {
                // From now on the output is kept `KEEP_S`.
                let _: redis::RedisResult<()> = redis::cmd("EXPIRE")
                    .arg(&self.key)
                    .arg(exec::KEEP_S)
                    .query_async(&mut conn)
                    .await;
                return;
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::error!(key = %self.key, "gave up writing the end of an exec");
                return;
            }
            backoff.wait().await;
        }
    }
}

/// Turns each stream's bytes into text on character boundaries, keeping an incomplete
/// character's first bytes for the next chunk.
#[derive(Default)]
struct Decoders {
    stdout: Utf8Carry,
    stderr: Utf8Carry,
}

impl Decoders {
    fn push(&mut self, stream: OutputStream, bytes: &[u8], out: &mut Vec<ExecEntry>) {
        let text = match stream {
            OutputStream::Stdout => self.stdout.push(bytes),
            OutputStream::Stderr => self.stderr.push(bytes),
        };
        emit(stream, &text, out);
    }

    fn finish(&mut self, out: &mut Vec<ExecEntry>) {
        let (o, e) = (self.stdout.finish(), self.stderr.finish());
        emit(OutputStream::Stdout, &o, out);
        emit(OutputStream::Stderr, &e, out);
    }
}

fn emit(stream: OutputStream, text: &str, out: &mut Vec<ExecEntry>) {
    out.extend(
        exec::chunks(text)
            .into_iter()
            .map(|data| ExecEntry::Output {
                stream,
                data: data.to_string(),
            }),
    );
}

/// A UTF-8 decoder for bytes that arrive in pieces: invalid bytes become U+FFFD, a character
/// cut at the end of a piece waits for the rest.
#[derive(Default)]
struct Utf8Carry {
    held: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        // An incomplete character at the end: wait for its other bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.held = rest.to_vec();
        out
    }

    /// What is left once the output ended: an incomplete character is invalid.
    fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.held)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_cut_between_chunks_come_out_whole() {
        let mut d = Utf8Carry::default();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(d.push(b"a"), "a");
        assert_eq!(d.push(&[b'b', euro[0]]), "b");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&[euro[2], b'c']), "€c");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_are_replaced_and_an_unfinished_character_ends_invalid() {
        let mut d = Utf8Carry::default();
        assert_eq!(d.push(&[b'x', 0xff, b'y']), "x\u{fffd}y");
        assert_eq!(d.push(&[0xe2, 0x82]), "");
        assert_eq!(d.finish(), "\u{fffd}");
        assert_eq!(d.push(b"z"), "z");
    }

    #[test]
    fn a_program_that_cannot_start_exits_126_or_127_with_dockers_message_on_stderr() {
        let code = |c: i64| ExecEntry::End {
            exit_code: Some(c),
            error: None,
        };
        let out = |stream, data: &str| ExecEntry::Output {
            stream,
            data: data.into(),
        };
        let missing = "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown\r\n";
        let (o, e) = cannot_start(missing.into(), code(126));
        assert_eq!(
            o,
            out(OutputStream::Stderr, &format!("{}\n", missing.trim_end()))
        );
        assert_eq!(e, code(127));
        let denied =
            "OCI runtime exec failed: exec failed: exec: \"/etc\": permission denied: unknown";
        assert_eq!(cannot_start(denied.into(), code(126)).1, code(126));
        // A newer engine that says 127 itself.
        assert_eq!(cannot_start(missing.into(), code(127)).1, code(127));
        // A program that printed the words and exited 0: its own output.
        let (o, e) = cannot_start(missing.into(), code(0));
        assert_eq!((o, e), (out(OutputStream::Stdout, missing), code(0)));
    }

    #[test]
    fn streams_are_decoded_apart_and_chunked() {
        let mut d = Decoders::default();
        let mut out = Vec::new();
        let euro = "€".as_bytes();
        d.push(OutputStream::Stdout, &euro[..1], &mut out);
        d.push(OutputStream::Stderr, b"err", &mut out);
        d.push(OutputStream::Stdout, &euro[1..], &mut out);
        let big = vec![b'a'; exec::MAX_CHUNK + 1];
        d.push(OutputStream::Stdout, &big, &mut out);
        d.push(OutputStream::Stderr, &[0xe2], &mut out);
        d.finish(&mut out);
        let got: Vec<(OutputStream, usize, String)> = out
            .into_iter()
            .map(|e| match e {
                ExecEntry::Output { stream, data } => (stream, data.len(), data),
                other => panic!("{other:?}"),
            })
            .map(|(s, n, d)| (s, n, if n > 8 { String::new() } else { d }))
            .collect();
        assert_eq!(
            got,
            vec![
                (OutputStream::Stderr, 3, "err".into()),
                (OutputStream::Stdout, 3, "€".into()),
                (OutputStream::Stdout, exec::MAX_CHUNK, String::new()),
                (OutputStream::Stdout, 1, "a".into()),
                (OutputStream::Stderr, 3, "\u{fffd}".into()),
            ]
        );
    }
}
