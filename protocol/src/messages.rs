//! Messages on the streams: jobs (coordinator → node), events (node → coordinator), log lines.

use serde::{Deserialize, Serialize};

use crate::model::{App, DeploymentStatus};

/// Envelope kind of [`Job`] entries on `berth:jobs:<node>`.
pub const JOB_KIND: &str = crate::envelope::kind::JOB;
/// Envelope kind of [`Event`] entries on `berth:events`.
pub const EVENT_KIND: &str = crate::envelope::kind::EVENT;

/// Work for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// Fetch, build, run, probe and switch traffic to one deployment of an app.
    Deploy(Box<DeployJob>),
    /// Stop and remove every container of an app on this node and drop its routes.
    RemoveApp { app: String, domains: Vec<String> },
    /// Stop every running container of an app on this node, keeping them (and the app's
    /// images) for `berth start`. The coordinator has taken the app's routes out already.
    StopApp { app: String },
    /// Run a command in one of this node's replicas (`berth exec`); its output goes to the
    /// exec's stream (see [`crate::exec`]).
    Exec(Box<crate::exec::ExecJob>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployJob {
    pub deployment_id: String,
    /// The app as it was when the deployment was created.
    pub app: App,
    /// Branch, tag or commit to deploy; `None` means `app.branch`.
    pub git_ref: Option<String>,
    /// Epoch ms after which the node gives up and reports `failed`.
    pub deadline_ms: u64,
    /// The app's git credential, sealed with the cluster's secret key.
    #[serde(default)]
    pub credential: Option<crate::secret::Sealed>,
    /// The app's secret variable values now, sealed bound to the app: the build takes those
    /// `app.env.secret` scopes `build`.
    #[serde(default)]
    pub env_secrets: Option<crate::secret::Sealed>,
    /// The secret runtime variables the container gets (the deployment's `runtime.secrets`).
    #[serde(default)]
    pub runtime_secrets: Option<crate::model::SealedEnv>,
    /// Set for a rollback: run this image, skip fetch and build.
    #[serde(default)]
    pub image: Option<String>,
    /// For a rollback (or a start): the deployment whose container — stopped, or still running
    /// out of the route — may simply be taken again; a container of the job's `image` serves
    /// as well.
    #[serde(default)]
    pub reuse_container_of: Option<String>,
    /// After success, the app's images on this node other than these (and the new one) are
    /// removed. `None`: prune nothing.
    #[serde(default)]
    pub keep_images: Option<Vec<String>>,
    /// For one replica of a rollout: the node starts and probes it, reports it healthy (or
    /// failed) with a [`crate::ReplicaReport`], and leaves the route to the coordinator.
    #[serde(default)]
    pub slot: Option<u32>,
    /// 0, or how many times the deployment (or the slot) was moved off a node that went down:
    /// a job of an earlier attempt may still run on that node when it comes back, and must not
    /// switch traffic.
    #[serde(default)]
    pub attempt: u32,
    /// Build this uploaded archive instead of fetching `app.repo`.
    #[serde(default)]
    pub upload: Option<crate::model::Upload>,
    /// Build with no cached layer.
    #[serde(default)]
    pub no_cache: bool,
}

/// Something a node reports.
// An event lives for one write or one read, one at a time: boxing the deployment variant would
// only add an allocation to the common case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A deployment moved to (or stays in) a status, with what became known on the way.
    Deployment(DeploymentUpdate),
    /// A `RemoveApp` job is done on `node`.
    AppRemoved { app: String, node: String, at: u64 },
}

/// A change to a deployment record: what a node reports in an [`Event::Deployment`], and what the
/// coordinator's own deadlines and cancels apply, through the one writer of records. Fields left
/// `None` are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentUpdate {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    /// The node that reported it (`None` for the coordinator's own changes).
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub commit_message: Option<String>,
    #[serde(default)]
    pub commit_author: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// One replica of a rollout became healthy or failed (the status then says only how far
    /// the deployment got; the coordinator ends it).
    #[serde(default)]
    pub replica: Option<Box<crate::model::ReplicaReport>>,
    /// The node's attempt (or, with `replica`, that replica's attempt) was interrupted by an
    /// infrastructure fault before it switched traffic: the coordinator runs it again or, past
    /// the last attempt, fails it. The status stays where it was.
    #[serde(default)]
    pub interrupted: Option<crate::model::Interruption>,
    /// The Dockerfile the build uses (capped by [`cap_dockerfile`]), sent once it is known.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Epoch ms of the change.
    pub at: u64,
}

impl DeploymentUpdate {
    /// `deployment_id` moves to `status` now; nothing else changes.
    pub fn new(deployment_id: impl Into<String>, status: DeploymentStatus) -> Self {
        DeploymentUpdate {
            deployment_id: deployment_id.into(),
            status,
            node: None,
            commit: None,
            commit_message: None,
            commit_author: None,
            image: None,
            container: None,
            error: None,
            replica: None,
            interrupted: None,
            dockerfile: None,
            at: crate::now_ms(),
        }
    }

    /// Attempt `attempt` of `deployment_id` (still `status`) was interrupted by `cause`, an
    /// infrastructure fault: it is to run again.
    pub fn interrupted(
        deployment_id: impl Into<String>,
        status: DeploymentStatus,
        attempt: u32,
        cause: impl Into<String>,
    ) -> Self {
        DeploymentUpdate {
            interrupted: Some(crate::model::Interruption {
                attempt,
                cause: cause.into(),
                at: crate::now_ms(),
            }),
            ..DeploymentUpdate::new(deployment_id, status)
        }
    }

    /// `deployment_id` ends `status` (failed or cancelled) because of `error`.
    pub fn ended(
        deployment_id: impl Into<String>,
        status: DeploymentStatus,
        error: impl Into<String>,
    ) -> Self {
        DeploymentUpdate {
            error: Some(error.into()),
            ..DeploymentUpdate::new(deployment_id, status)
        }
    }
}

/// The most of a Dockerfile's text a deployment record keeps, in bytes.
pub const DOCKERFILE_MAX: usize = 64 * 1024;

/// `text` as a deployment record keeps it: whole up to [`DOCKERFILE_MAX`] bytes, else cut on a
/// character boundary with a last line saying so.
pub fn cap_dockerfile(text: &str) -> String {
    if text.len() <= DOCKERFILE_MAX {
        return text.to_string();
    }
    let mut end = DOCKERFILE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n# … cut here: the Dockerfile is {} bytes, a deployment keeps {DOCKERFILE_MAX}\n",
        &text[..end],
        text.len()
    )
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Written by Berth itself (progress, probe results, errors).
    System,
}

/// One log line. Stored as the stream entry's plain fields `ts`, `stream`, `line` (and, in an
/// app's runtime log, `node`, `container`, `deployment`), so `redis-cli XRANGE` reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Epoch ms: when the line was written (build and deploy logs) or when Docker read it from
    /// the container (runtime logs).
    pub ts: u64,
    pub stream: LogStream,
    pub line: String,
    /// The node that produced the line (runtime logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The container's name (runtime logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The deployment whose container printed the line (runtime logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

impl LogLine {
    /// A line without runtime tags (a build or deploy log line).
    pub fn new(ts: u64, stream: LogStream, line: impl Into<String>) -> LogLine {
        LogLine {
            ts,
            stream,
            line: line.into(),
            node: None,
            container: None,
            deployment: None,
        }
    }

    /// The line as its stream entry's fields: `ts`, `stream`, `line`, then whichever of `node`,
    /// `container`, `deployment` are set. The one writer's view of the format.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("ts", self.ts.to_string()),
            ("stream", self.stream.as_str().to_string()),
            ("line", self.line.clone()),
        ];
        for (k, v) in [
            ("node", &self.node),
            ("container", &self.container),
            ("deployment", &self.deployment),
        ] {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        out
    }

    /// The line from its stream entry's fields (`get` reads one); missing ones read as empty.
    pub fn from_fields(get: impl Fn(&str) -> Option<String>) -> LogLine {
        LogLine {
            ts: get("ts").and_then(|t| t.parse().ok()).unwrap_or(0),
            stream: LogStream::parse(&get("stream").unwrap_or_default()),
            line: get("line").unwrap_or_default(),
            node: get("node"),
            container: get("container"),
            deployment: get("deployment"),
        }
    }
}

/// A log line with its stream entry id: what the API returns and what SSE `id:` carries, so a
/// client resumes after the last id it saw (`Last-Event-ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    pub id: String,
    #[serde(flatten)]
    pub line: LogLine,
}

/// A stream entry id (`<ms>-<seq>`, e.g. a `Last-Event-ID` header) as `(ms, seq)`, which orders
/// ids as Redis does; `None` if it is not one. The one parser of entry ids.
pub fn stream_id_order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Whether `id` is a Redis stream entry id: exactly what [`stream_id_order`] accepts.
pub fn is_stream_id(id: &str) -> bool {
    stream_id_order(id).is_some()
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    pub fn parse(s: &str) -> LogStream {
        match s {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => LogStream::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode, encode};

    #[test]
    fn log_lines_round_trip_through_stream_fields() {
        let line = LogLine {
            ts: 5,
            stream: LogStream::Stderr,
            line: "boom".into(),
            node: Some("n1".into()),
            container: None,
            deployment: Some("d1".into()),
        };
        let fields = line.fields();
        assert_eq!(
            fields.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["ts", "stream", "line", "node", "deployment"]
        );
        let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| v.clone());
        assert_eq!(LogLine::from_fields(get), line);
    }

    #[test]
    fn stream_ids_are_parsed_one_way() {
        for (id, want) in [
            ("1-0", Some((1, 0))),
            ("1764097262123-15", Some((1764097262123, 15))),
            ("18446744073709551615-0", Some((u64::MAX, 0))),
            // 20 digits past u64: not an id Redis could have made.
            ("99999999999999999999-0", None),
            ("+1-0", None),
            ("1-", None),
            ("-1", None),
            ("1", None),
            ("a-b", None),
        ] {
            assert_eq!(stream_id_order(id), want, "{id}");
            assert_eq!(is_stream_id(id), want.is_some(), "{id}");
        }
    }

    #[test]
    fn job_round_trips_through_envelope() {
        let job = Job::RemoveApp {
            app: "a".into(),
            domains: vec!["a.localhost".into()],
        };
        let bytes = encode(JOB_KIND, "j1", &job).unwrap();
        assert_eq!(decode::<Job>(&bytes, JOB_KIND).unwrap(), job);
    }

    #[test]
    fn event_round_trips_through_envelope() {
        let ev = Event::Deployment(DeploymentUpdate {
            node: Some("n".into()),
            at: 5,
            ..DeploymentUpdate::ended("d", DeploymentStatus::Failed, "boom")
        });
        let bytes = encode(EVENT_KIND, "e1", &ev).unwrap();
        assert_eq!(decode::<Event>(&bytes, EVENT_KIND).unwrap(), ev);
    }

    /// The event as the struct variant of the first release wrote it still decodes.
    #[test]
    fn event_of_the_first_wire_format_decodes() {
        #[derive(Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Old {
            Deployment {
                deployment_id: String,
                node: String,
                status: DeploymentStatus,
                image: Option<String>,
                at: u64,
            },
        }
        let old = Old::Deployment {
            deployment_id: "d".into(),
            node: "n".into(),
            status: DeploymentStatus::Deploying,
            image: Some("i".into()),
            at: 7,
        };
        let bytes = encode(EVENT_KIND, "e1", &old).unwrap();
        let Event::Deployment(u) = decode::<Event>(&bytes, EVENT_KIND).unwrap() else {
            panic!("not a deployment event");
        };
        assert_eq!(
            (u.node.as_deref(), u.image.as_deref(), u.at, u.status),
            (Some("n"), Some("i"), 7, DeploymentStatus::Deploying)
        );
    }
}
