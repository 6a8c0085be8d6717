//! Resource figures: what a node samples (one [`ContainerSample`] per running app container and
//! interval, on the app's stream `berth:metrics:<app>`; [`crate::HostStats`] in its heartbeat) and
//! the answer of `GET /api/v1/apps/{name}/metrics`.

use serde::{Deserialize, Serialize};

/// Envelope kind of a [`ContainerSample`] entry (field [`crate::envelope::STREAM_FIELD`]).
pub const SAMPLE_KIND: &str = crate::envelope::kind::SAMPLE;

/// How long samples are kept on an app's stream (XADD `MINID ~` trimming, and the key expires
/// this long after its last sample).
pub const RETENTION_MS: u64 = 3_600_000;

/// Default and largest window of `GET /api/v1/apps/{name}/metrics`, in seconds.
pub const DEFAULT_WINDOW_S: u64 = 15 * 60;
pub const MAX_WINDOW_S: u64 = 3_600;

/// One container's figures at one instant, as Docker reports them: which container, and its
/// [`SamplePoint`]. On the stream it is one flat map (`ts`, `node`, `container`, `deployment`,
/// `cpu_pct`, …): the point's fields sit beside the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSample {
    pub node: String,
    /// Container name.
    pub container: String,
    pub deployment: String,
    /// The container's id (what a route's upstreams name); absent in samples of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(flatten)]
    pub point: SamplePoint,
}

/// One sample of one replica: the figures of a [`ContainerSample`], and an entry of
/// [`ReplicaSeries::samples`] in [`AppMetrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SamplePoint {
    /// When the node took the sample (ms since the epoch).
    pub ts: u64,
    /// CPU use in percent of one core (200 = two cores busy), as `docker stats` shows it.
    pub cpu_pct: f64,
    /// Memory in use, page cache excluded (as `docker stats` shows it).
    pub mem_bytes: u64,
    pub mem_limit_bytes: u64,
    /// Bytes received and sent over all its interfaces since the container started.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// The samples of one container of an app, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaSeries {
    pub node: String,
    pub container: String,
    pub deployment: String,
    pub samples: Vec<SamplePoint>,
}

/// The app as a whole at one instant: per bucket, the sum over replicas of each one's latest
/// sample in that bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotalPoint {
    /// Start of the bucket (ms since the epoch).
    pub ts: u64,
    pub cpu_pct: f64,
    pub mem_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// How many replicas had a sample in this bucket.
    pub replicas: u32,
}

/// `GET /api/v1/apps/{name}/metrics?window=15m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppMetrics {
    pub app: String,
    pub window_s: u64,
    /// Width of the buckets of `total` (the sampling interval seen in the data).
    #[serde(default)]
    pub bucket_s: u64,
    pub replicas: Vec<ReplicaSeries>,
    pub total: Vec<TotalPoint>,
}

/// Parses a metrics window, a duration in the grammar of [`crate::duration::parse_duration`]
/// (`30s`, `15m`, `1h`, `1m 30s`); `None` or empty is the default (15 minutes). Whole seconds,
/// at least one second, at most one hour (the retention).
pub fn parse_window(s: Option<&str>) -> Result<u64, String> {
    let s = match s.map(str::trim) {
        None | Some("") => return Ok(DEFAULT_WINDOW_S),
        Some(s) => s,
    };
    let d = crate::duration::parse_duration("window", s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "window {s:?} is not a whole number of seconds (such as 90s, 15m or 1h 30m)"
        ));
    }
    let secs = d.as_secs();
    if secs == 0 || secs > MAX_WINDOW_S {
        return Err(format!(
            "window {s:?} is out of range: between 1s and 1h (samples are kept for 1 hour)"
        ));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        for (text, secs) in [
            (None, 900),
            (Some(""), 900),
            (Some("  "), 900),
            (Some("1s"), 1),
            (Some("30s"), 30),
            (Some("90s"), 90),
            (Some("15m"), 900),
            (Some("15 m"), 900),
            (Some("1.5m"), 90),
            (Some("1m 30s"), 90),
            (Some("59m 60s"), 3600),
            (Some("1h"), 3600),
            (Some("60m"), 3600),
            (Some("3600 seconds"), 3600),
        ] {
            assert_eq!(parse_window(text), Ok(secs), "{text:?}");
        }
        // Not a duration: the shared grammar's message.
        for bad in ["abc", "15", "m", "-5m", "1,5m", "5é", "1h 30"] {
            let e = parse_window(Some(bad)).unwrap_err();
            assert!(
                e.starts_with("window must be a duration such as"),
                "{bad}: {e}"
            );
        }
        // A duration, but not a window.
        for (bad, why) in [
            ("0s", "out of range"),
            ("2h", "out of range"),
            ("61m", "out of range"),
            ("1h 1s", "out of range"),
            ("1d", "out of range"),
            ("500ms", "whole number of seconds"),
            ("1.5s", "whole number of seconds"),
        ] {
            let e = parse_window(Some(bad)).unwrap_err();
            assert!(e.starts_with("window ") && e.contains(why), "{bad}: {e}");
        }
        assert!(parse_window(Some("99999999999999999999h")).is_err());
    }

    #[test]
    fn sample_round_trips_through_envelope() {
        let s = ContainerSample {
            node: "n".into(),
            container: "c".into(),
            deployment: "d".into(),
            container_id: Some("0123abcd".into()),
            point: SamplePoint {
                ts: 1,
                cpu_pct: 12.5,
                mem_bytes: 3,
                mem_limit_bytes: 4,
                net_rx_bytes: 5,
                net_tx_bytes: 6,
            },
        };
        let bytes = crate::envelope::encode(SAMPLE_KIND, "x", &s).unwrap();
        assert_eq!(
            crate::envelope::decode::<ContainerSample>(&bytes, SAMPLE_KIND).unwrap(),
            s
        );

        // On the stream it is one flat map, both ways: what this build writes, and what a
        // build that wrote the fields one by one reads (and wrote).
        let mut flat = serde_json::json!({
            "ts": 1, "node": "n", "container": "c", "deployment": "d", "cpu_pct": 12.5,
            "mem_bytes": 3, "mem_limit_bytes": 4, "net_rx_bytes": 5, "net_tx_bytes": 6,
            "container_id": "0123abcd"
        });
        assert_eq!(
            crate::envelope::decode::<serde_json::Value>(&bytes, SAMPLE_KIND).unwrap(),
            flat
        );
        let new = crate::envelope::encode(SAMPLE_KIND, "x", &flat).unwrap();
        assert_eq!(
            crate::envelope::decode::<ContainerSample>(&new, SAMPLE_KIND).unwrap(),
            s
        );
        // A sample of a node from before `container_id`: none.
        flat.as_object_mut().unwrap().remove("container_id");
        let old = crate::envelope::encode(SAMPLE_KIND, "x", &flat).unwrap();
        assert_eq!(
            crate::envelope::decode::<ContainerSample>(&old, SAMPLE_KIND).unwrap(),
            ContainerSample {
                container_id: None,
                ..s
            }
        );
    }
}
