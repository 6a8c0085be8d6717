//! Metrics over HTTP: `GET /api/v1/apps/{name}/metrics` (an app's resource series, JSON) and
//! `GET /metrics` (Prometheus text, same bearer token as the API).
//!
//! The cluster's families come from the coordinator (read from Redis at each scrape); the one
//! thing measured here, in-process, is the duration of every HTTP request
//! (`berth_api_request_duration_seconds{method,code}`), recorded from the request log filter
//! that wraps all routes.

use std::collections::HashMap;
use std::sync::Arc;

use berth_coordinator::{api, Coordinator};
use prometheus::{HistogramOpts, HistogramVec, Registry, TextEncoder};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// The request-duration histogram and the registry it lives in (one per `routes`).
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: HistogramVec,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "berth_api_request_duration_seconds",
                "Time to answer an HTTP request of the API, by method and status code.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "code"],
        )
        .expect("static histogram options are valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("one registration in a fresh registry");
        HttpMetrics { registry, requests }
    }

    /// Records one answered request.
    pub fn observe(&self, method: &str, code: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, &code.to_string()])
            .observe(seconds);
    }
}

/// `GET /metrics`, behind the API token.
pub(crate) fn prometheus_route(
    coord: Coordinator,
    token: Arc<str>,
    http: HttpMetrics,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(super::authorized(token))
        .then(move || {
            let (coord, http) = (coord.clone(), http.clone());
            async move {
                let mut families = match super::flatten(coord.api.send(api::ClusterMetrics).await) {
                    Ok(f) => f,
                    Err(e) => return e.into_response(),
                };
                families.extend(http.registry.gather());
                // The text encoder refuses a family without samples (e.g. no node yet).
                families.retain(|f| !f.get_metric().is_empty());
                match TextEncoder::new().encode_to_string(&families) {
                    Ok(text) => {
                        warp::reply::with_header(text, "content-type", prometheus::TEXT_FORMAT)
                            .into_response()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode metrics");
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot encode the metrics; the coordinator's log has the details",
                        )
                        .into_response()
                    }
                }
            }
        })
}

/// `GET /api/v1/apps/{name}/metrics?window=15m` (mounted under the API prefix).
pub(crate) fn app_route(
    coord: Coordinator,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("apps" / String / "metrics")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .then(move |app: String, q: HashMap<String, String>| {
            let coord = coord.clone();
            async move {
                let msg = api::GetAppMetrics {
                    app,
                    window: q.get("window").cloned(),
                };
                super::respond(coord.api.send(msg).await, StatusCode::OK)
            }
        })
}
