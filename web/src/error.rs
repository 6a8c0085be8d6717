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
            Error::Fenced(_) | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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

/// Turns warp's rejections into JSON errors.
pub async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let err = if let Some(Unauthorized(msg)) = r.find() {
        ApiError::new(StatusCode::UNAUTHORIZED, *msg)
    } else if r.is_not_found() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such endpoint; see the API table in the README",
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than 1 MiB",
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad request: {r:?}"))
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
