//! The entry points of the fuzz targets in `fuzz/fuzz_targets/` (`webhook`, `app_spec`), here so
//! that the replay test (`tests/fuzz_seeds.rs`) runs the very same code over the committed seeds
//! and crash reproducers in `fuzz/seeds/<target>/`. Each function takes any bytes and panics only
//! on a bug: a panic in a parser, or a broken property that is asserted.

use berth_protocol::api::{CreateApp, PatchApp};
use berth_protocol::{envelope, validate, App};

use crate::{apps, webhook};

/// The base domain and reserved names the app-spec target builds apps with.
const BASE: &str = "berth.example";

/// A webhook delivery: `data[0]` picks the content type (odd: a form), the rest is the body.
/// Reads the push the way the API does, then asks what it wants (action, digest, repository
/// keys) and checks the signature header read from the body's first line.
pub fn webhook(data: &[u8]) {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let ctype = (first & 1 == 1).then_some("application/x-www-form-urlencoded");
    let header = String::from_utf8_lossy(body.split(|b| *b == b'\n').next().unwrap_or_default());
    let _ = webhook::verify_signature(b"secret", body, Some(&header));
    let Ok(push) = webhook::read_push(ctype, body) else {
        return;
    };
    let _ = push.action();
    let digest = push.digest();
    assert_eq!(digest.len(), 64, "a digest is 64 hex digits");
    let _ = push.repo_keys();
}

/// An app spec as the API takes it: JSON of a `CreateApp`, or of `[CreateApp, PatchApp]`. What
/// builds (and what a patch makes of it) passes `validate::app` and survives its envelope; each
/// string validator also runs over the bytes as text.
pub fn app_spec(data: &[u8]) {
    let reserved = vec![BASE.to_string(), format!("api.{BASE}")];
    let text = String::from_utf8_lossy(data);
    let _ = validate::app_name(&text);
    if let Ok(d) = validate::normalize_domain(&text, &reserved) {
        assert_eq!(validate::normalize_domain(&d, &reserved), Ok(d.clone()));
    }
    let _ = validate::repo_path("dockerfile", &text);
    let _ = validate::repo(&text);
    let _ = validate::upload_sha256(&text);
    let _ = validate::git_ref("branch", &text);
    let _ = validate::env_name(&text);
    let _ = validate::webhook_secret(&text);
    let _ = validate::health_path(&text);
    let _ = validate::label_key(&text);
    let _ = validate::label_value(&text);
    let _ = validate::release_image("web", &text, Some("registry.local:5000/"));

    let (create, patch) = match serde_json::from_slice::<CreateApp>(data) {
        Ok(c) => (c, None),
        Err(_) => match serde_json::from_slice::<(CreateApp, PatchApp)>(data) {
            Ok((c, p)) => (c, Some(p)),
            Err(_) => return,
        },
    };
    let Ok(app) = apps::build(create, BASE, &reserved) else {
        return;
    };
    check_app(&app);
    if let Some(p) = patch {
        if let Ok(patched) = apps::patch(app, p, &reserved) {
            check_app(&patched);
        }
    }
}

fn check_app(app: &App) {
    if let Err(e) = validate::app(app) {
        panic!("an app the API accepted is not valid: {e}");
    }
    let bytes = envelope::encode(envelope::kind::APP, "fuzz", app).expect("an app encodes");
    let back: App = envelope::decode(&bytes, envelope::kind::APP).expect("an app decodes");
    assert_eq!(&back, app, "an app changed through its envelope");
}
