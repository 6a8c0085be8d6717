//! Query strings: [`query`] parses one into `T` and, when it does not fit, refuses the request
//! with a 400 that names the parameter (`query parameter limit: invalid digit found in string`)
//! instead of warp's one sentence for every query.

use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use crate::error::{ApiError, Failed};

/// The request's query string (none: empty) as `T`; a 400 naming the parameter otherwise.
pub fn query<T: DeserializeOwned + Send + 'static>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::filters::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(
            |q: String| async move { parse::<T>(&q).map_err(|e| warp::reject::custom(Failed(e))) },
        )
}

/// `q` (without its `?`) as `T`.
pub fn parse<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid query string: {inner}"))
        } else {
            ApiError::bad_request(format!("query parameter {path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Q {
        limit: Option<usize>,
        #[serde(default)]
        no_cache: bool,
    }

    #[test]
    fn a_bad_parameter_is_named() {
        assert_eq!(
            parse::<Q>("limit=5&no_cache=true").unwrap(),
            Q {
                limit: Some(5),
                no_cache: true
            }
        );
        assert_eq!(
            parse::<Q>("").unwrap(),
            Q {
                limit: None,
                no_cache: false
            }
        );
        let e = parse::<Q>("limit=abc").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.starts_with("query parameter limit: "),
            "{}",
            e.message
        );
        let e = parse::<Q>("no_cache=maybe").unwrap_err();
        assert!(
            e.message.starts_with("query parameter no_cache: "),
            "{}",
            e.message
        );
        let e = parse::<Q>("colour=red").unwrap_err();
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let m = parse::<HashMap<String, String>>("follow=1&format=json").unwrap();
        assert_eq!(m["format"], "json");
    }
}
