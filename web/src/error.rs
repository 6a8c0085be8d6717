//! Errors as HTTP answers: `{"error": "<message a person can act on>"}` with the right status:
//! 4xx for the caller's mistakes, 503 while Redis is away ("Redis is unreachable at <addr>:
//! <cause>; Berth retries — try again shortly"), 500 (a generic text; the details in the log)
//! for the rest.

use std::convert::Infallible;

use berth_coordinator::Error;
use berth_protocol::api::ErrorBody;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Fenced(_) | Error::Unavailable(_) | Error::Unreplicated(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if e.is_client_error() {
            ApiError::new(status, e.to_string())
        } else if let Error::Fenced(why) = &e {
            // This coordinator just lost the lead: the request may be sent again, here or to
            // the new leader.
            ApiError::new(status, format!("{why}; try again"))
        } else if let Error::Unavailable(why) = &e {
            // The coordinator's connection logs the outage (once); nothing to add per request.
            ApiError::new(status, unavailable(why))
        } else if let Error::Unreplicated(what) = &e {
            // Already says what was written and what to check: trying again blindly could do
            // it twice.
            ApiError::new(status, what.clone())
        } else if let Error::Unreadable(what) = &e {
            // Which record is broken is what the operator needs; it holds no secret.
            tracing::error!(error = %e, "unreadable record");
            ApiError::new(status, what.clone())
        } else {
            tracing::error!(error = %e, "internal error answering a request");
            ApiError::new(
                status,
                "internal error in the coordinator; its log has the details",
            )
        }
    }
}

/// What a request answers while Redis is away: why, and that it is worth trying again.
pub fn unavailable(why: &str) -> String {
    format!("{why}; Berth retries — try again shortly")
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        warp::reply::with_status(
            warp::reply::json(&ErrorBody {
                error: self.message,
            }),
            self.status,
        )
        .into_response()
    }
}

/// Rejection for a missing or wrong bearer token.
#[derive(Debug)]
pub struct Unauthorized(pub &'static str);

impl warp::reject::Reject for Unauthorized {}

/// Rejection for a token whose scope does not allow the request (403); the sentence names the
/// scope needed.
#[derive(Debug)]
pub struct Forbidden(pub String);

impl warp::reject::Reject for Forbidden {}

/// Rejection for a client address past its failed-authentication allowance (429); `.0` is the
/// seconds until it may try again.
#[derive(Debug)]
pub struct TooManyFailures(pub u64);

impl warp::reject::Reject for TooManyFailures {}

/// An error answer raised where only a rejection can be (e.g. Redis away while a token is
/// looked up).
#[derive(Debug)]
pub struct Failed(pub ApiError);

impl warp::reject::Reject for Failed {}

/// Turns warp's rejections into JSON errors: one fixed sentence per kind of rejection. A
/// rejection's `Debug` text is warp's internals (types, parser errors) and is never sent back.
pub async fn recover(r: Rejection) -> Result<Response, Infallible> {
    use crate::body;
    // A body refused for its size or pace is the answer even when another route's rejection
    // (e.g. a missing token on `/api/v1/…`) was combined with it: it is the more specific one.
    let err = if let Some(body::TooLarge(limit)) = r.find() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than {}; nothing was read",
                human_size(*limit)
            ),
        )
    } else if let Some(body::TooSlow(t)) = r.find() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s (api.body_timeout_s)",
                t.as_secs()
            ),
        )
    } else if let Some(TooManyFailures(secs)) = r.find() {
        let secs = (*secs).max(1);
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests with a wrong token from this address ({} within {} s); try \
                 again in {secs} s",
                berth_coordinator::api::AUTH_FAILURES_ALLOWED,
                berth_coordinator::api::AUTH_FAILURE_WINDOW_S
            ),
        )
        .into_response();
        resp.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from(secs),
        );
        return Ok(resp);
    } else if let Some(Unauthorized(msg)) = r.find() {
        ApiError::new(StatusCode::UNAUTHORIZED, *msg)
    } else if let Some(Failed(e)) = r.find() {
        ApiError::new(e.status, e.message.clone())
    } else if let Some(Forbidden(msg)) = r.find() {
        ApiError::new(StatusCode::FORBIDDEN, msg.clone())
    } else if r.is_not_found() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such endpoint; see the API table in the README",
        )
    } else if r.find::<body::LengthRequired>().is_some()
        || r.find::<warp::reject::LengthRequired>().is_some()
    {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "a request with a body needs a Content-Length header",
        )
    } else if r.find::<body::BadLength>().is_some() {
        ApiError::bad_request("the Content-Length header is not a number")
    } else if r.find::<body::Broken>().is_some() {
        ApiError::bad_request("the request body broke off before its end")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        )
    } else if let Some(h) = r.find::<warp::reject::InvalidHeader>() {
        // The header's name is the client's own text; its value and warp's parse error are not
        // echoed.
        ApiError::bad_request(format!("the {} header is not valid", h.name()))
    } else if let Some(h) = r.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(format!("the {} header is missing", h.name()))
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("the query string is not valid for this endpoint")
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type for this endpoint",
        )
    } else {
        // Whatever else warp rejected for: the details go to the log, not to the client.
        tracing::debug!(rejection = ?r, "request rejected");
        ApiError::bad_request("the request is malformed")
    };
    let mut resp = err.into_response();
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            "www-authenticate",
            warp::http::HeaderValue::from_static("Bearer"),
        );
    }
    Ok(resp)
}

/// `1 MiB`, `5 MiB`, `512 KiB`, `100 B`: a limit as a person reads it.
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}
