//! Secrets at rest: an app's git credential is stored and queued only sealed
//! (XChaCha20-Poly1305 with a 32-byte key from config or a key file), and opened only by the node
//! that clones with it. Pure computation — no I/O here.
//!
//! A credential is sealed bound to its app: the app's name is the AEAD's associated data
//! ([`Sealed::v`] = 1), so a blob copied under another app's key does not open there (its
//! token would otherwise be sent to that app's repository). Blobs written before that
//! (`v` = 0, no associated data) open only through [`GitCredential::open_unbound`], which the
//! coordinator uses once at start to re-seal them bound to the app they are stored under.

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// What git needs for a credential (see [`GitCredential::git_env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitEnv {
    /// Environment variables for the git process.
    pub vars: Vec<(String, String)>,
    /// For an SSH key: the contents of the key file the variables name.
    pub key: Option<String>,
    /// For an SSH key with pinned host keys: the contents of the known_hosts file the variables
    /// name (`key_file` with the extension `known_hosts`), written beside the key.
    pub known_hosts: Option<String>,
}

/// `username:token` as HTTP Basic credentials.
fn basic_auth(username: &str, token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"))
}

/// The key that seals and opens secrets. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        SecretKey(Key::generate().into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<SecretKey, String> {
        let bytes = hex::decode(s.trim())
            .map_err(|_| "the secret key must be 64 hex digits".to_string())?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the secret key must be 64 hex digits (32 bytes)".to_string())?;
        Ok(SecretKey(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.0))
    }

    /// Seals `plain` with a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Sealed {
        let nonce = XNonce::generate();
        let data = self
            .cipher()
            .encrypt(&nonce, plain)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        Sealed {
            nonce: nonce.to_vec(),
            data,
            v: SEALED_UNBOUND,
        }
    }

    /// Seals `plain` with a fresh random nonce, bound to `aad` (associated data: not secret, but
    /// the blob opens only with the same `aad`).
    pub fn seal_bound(&self, plain: &[u8], aad: &[u8]) -> Sealed {
        let nonce = XNonce::generate();
        let data = self
            .cipher()
            .encrypt(&nonce, Payload { msg: plain, aad })
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        Sealed {
            nonce: nonce.to_vec(),
            data,
            v: SEALED_BOUND,
        }
    }

    /// Opens what [`SecretKey::seal`] sealed; fails on a wrong key or tampered data.
    pub fn open(&self, sealed: &Sealed) -> Result<Vec<u8>, String> {
        self.open_bound(sealed, b"")
    }

    /// Opens what [`SecretKey::seal_bound`] sealed with `aad`; fails on a wrong key, another
    /// `aad` or tampered data.
    pub fn open_bound(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, String> {
        let nonce: [u8; 24] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| "sealed secret has a bad nonce".to_string())?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed.data.as_slice(),
                    aad,
                },
            )
            .map_err(|_| {
                "cannot open the sealed secret: this node's secret key differs from the coordinator's, \
                 or the secret was sealed for another app"
                    .to_string()
            })
    }
}

/// [`Sealed::v`] of a blob sealed without associated data (every blob before binding existed).
pub const SEALED_UNBOUND: u8 = 0;
/// [`Sealed::v`] of a blob bound to its owner by associated data.
pub const SEALED_BOUND: u8 = 1;

/// Ciphertext and nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sealed {
    /// Hex.
    #[serde(with = "serde_bytes_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub nonce: Vec<u8>,
    /// Hex.
    #[serde(with = "serde_bytes_vec")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub data: Vec<u8>,
    /// How it was sealed: [`SEALED_UNBOUND`] (absent in older records) or [`SEALED_BOUND`].
    #[serde(default)]
    pub v: u8,
}

/// The associated data binding a git credential to app `app`.
fn credential_aad(app: &str) -> Vec<u8> {
    format!("berth git credential v1 of app {app}").into_bytes()
}

/// Seals `app`'s own webhook secret, bound to the app (another app's blob does not open).
pub fn seal_webhook_secret(key: &SecretKey, app: &str, secret: &str) -> Sealed {
    key.seal_bound(secret.as_bytes(), &webhook_aad(app))
}

/// Opens what [`seal_webhook_secret`] sealed for `app`.
pub fn open_webhook_secret(key: &SecretKey, app: &str, sealed: &Sealed) -> Result<Vec<u8>, String> {
    key.open_bound(sealed, &webhook_aad(app))
}

fn webhook_aad(app: &str) -> Vec<u8> {
    format!("berth webhook secret v1 of app {app}").into_bytes()
}

/// Seals `app`'s secret variable values (name → value), bound to the app.
pub fn seal_env(
    key: &SecretKey,
    app: &str,
    values: &std::collections::BTreeMap<String, String>,
) -> Sealed {
    let plain = rmp_serde::to_vec(values).expect("a map of strings always encodes");
    key.seal_bound(&plain, &env_aad(app))
}

/// Opens what [`seal_env`] sealed for `app`.
pub fn open_env(
    key: &SecretKey,
    app: &str,
    sealed: &Sealed,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let plain = key.open_bound(sealed, &env_aad(app))?;
    rmp_serde::from_slice(&plain).map_err(|e| format!("the sealed variables do not decode: {e}"))
}

fn env_aad(app: &str) -> Vec<u8> {
    format!("berth env secrets v1 of app {app}").into_bytes()
}

/// Byte vectors as hex strings (compact enough, and readable in any format).
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// How a node authenticates to an app's git remote. Only ever stored or queued sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GitCredential {
    /// An HTTPS token (GitHub: a fine-grained or deploy token), sent as HTTP Basic auth.
    HttpsToken {
        #[serde(default = "default_user")]
        username: String,
        token: String,
    },
    /// An SSH deploy key (OpenSSH private key, no passphrase), with the server's host keys
    /// pinned: given by the operator (`known_hosts` lines), or recorded at the coordinator's
    /// first successful check of the repository (trust on first use). Once pinned, a changed host
    /// key fails the fetch.
    SshKey {
        private_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_hosts: Option<String>,
    },
}

fn default_user() -> String {
    "x-access-token".into()
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitCredential({})", self.kind())
    }
}

impl GitCredential {
    pub fn kind(&self) -> &'static str {
        match self {
            GitCredential::HttpsToken { .. } => "https_token",
            GitCredential::SshKey { .. } => "ssh_key",
        }
    }

    /// The values that must never appear in a log.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            GitCredential::HttpsToken { token, .. } => vec![token.clone()],
            GitCredential::SshKey { private_key, .. } => private_key
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                .map(String::from)
                .collect(),
        }
    }

    /// Every value that must never appear in a log: the secret itself and the forms git sends
    /// it in.
    pub fn mask_values(&self) -> Vec<String> {
        let mut values = self.secrets();
        if let GitCredential::HttpsToken { username, token } = self {
            values.push(basic_auth(username, token));
        }
        values
    }

    /// How git is given this credential — the same wherever git runs (a node's fetch, the
    /// coordinator's reachability check): environment variables, never arguments (which any
    /// local user could read in `ps`). An HTTPS token becomes an `http.extraHeader` through
    /// `GIT_CONFIG_*`; an SSH key is named in `GIT_SSH_COMMAND` at `key_file`, where the caller
    /// writes [`GitEnv::key`] (mode 0600) before running git.
    pub fn git_env(&self, key_file: &std::path::Path) -> GitEnv {
        match self {
            GitCredential::HttpsToken { username, token } => GitEnv {
                vars: vec![
                    ("GIT_CONFIG_COUNT".into(), "1".into()),
                    ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                    (
                        "GIT_CONFIG_VALUE_0".into(),
                        format!("Authorization: Basic {}", basic_auth(username, token)),
                    ),
                ],
                key: None,
                known_hosts: None,
            },
            GitCredential::SshKey {
                private_key,
                known_hosts,
            } => {
                let known_hosts_file = key_file.with_extension("known_hosts");
                // Pinned: only these keys (not the machine's own known_hosts) and nothing new.
                // Not yet: whatever the server shows is recorded in a fresh file, which the
                // caller reads back after a successful run to pin it.
                let hosts = match known_hosts {
                    Some(_) => "-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null",
                    None => "-o StrictHostKeyChecking=accept-new -o GlobalKnownHostsFile=/dev/null",
                };
                GitEnv {
                    vars: vec![(
                        "GIT_SSH_COMMAND".into(),
                        format!(
                            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes {hosts} -o UserKnownHostsFile={}",
                            key_file.display(),
                            known_hosts_file.display()
                        ),
                    )],
                    key: Some(format!("{}\n", private_key.trim())),
                    known_hosts: known_hosts.as_ref().map(|k| format!("{}\n", k.trim())),
                }
            }
        }
    }

    /// The same credential with `known_hosts` pinned (an SSH key's; other kinds unchanged).
    pub fn with_known_hosts(&self, pinned: String) -> GitCredential {
        match self {
            GitCredential::SshKey { private_key, .. } => GitCredential::SshKey {
                private_key: private_key.clone(),
                known_hosts: Some(pinned),
            },
            other => other.clone(),
        }
    }

    /// Whether this is an SSH key whose server's host keys are not pinned yet.
    pub fn learns_host_keys(&self) -> bool {
        matches!(
            self,
            GitCredential::SshKey {
                known_hosts: None,
                ..
            }
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            GitCredential::HttpsToken { username, token } => {
                if token.trim().is_empty() || token.contains(['\n', '\r', ' ']) {
                    return Err("git_credential.token must be one word".into());
                }
                if username.is_empty() || username.contains([':', '\n', '\r']) {
                    return Err("git_credential.username must not be empty or contain ':'".into());
                }
            }
            GitCredential::SshKey {
                private_key,
                known_hosts,
            } => {
                if !private_key.trim_start().starts_with("-----BEGIN") {
                    return Err(
                        "git_credential.private_key must be an OpenSSH private key (-----BEGIN …)"
                            .into(),
                    );
                }
                if let Some(k) = known_hosts {
                    let lines: Vec<&str> = k
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .collect();
                    if lines.is_empty()
                        || k.contains('\0')
                        || lines.iter().any(|l| l.split_whitespace().count() < 3)
                    {
                        return Err("git_credential.known_hosts must be known_hosts lines \
                                    (`host key-type key`, as ssh-keyscan prints them)"
                            .into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Seals the credential bound to `app`: it opens only as that app's.
    pub fn seal(&self, key: &SecretKey, app: &str) -> Sealed {
        let plain = serde_json::to_vec(self).expect("a credential serializes");
        key.seal_bound(&plain, &credential_aad(app))
    }

    /// Opens `app`'s credential. A blob sealed for another app (copied under this app's key)
    /// does not open; nor does one sealed before credentials were bound to their app, which the
    /// coordinator re-seals at its start.
    pub fn open(key: &SecretKey, app: &str, sealed: &Sealed) -> Result<GitCredential, String> {
        let plain = match sealed.v {
            SEALED_BOUND => key
                .open_bound(sealed, &credential_aad(app))
                .map_err(|e| format!("the git credential of app {app}: {e}"))?,
            SEALED_UNBOUND => {
                return Err(format!(
                    "the git credential of app {app} was sealed by an older Berth and not yet \
                     re-sealed for its app: start a coordinator of this version (it re-seals \
                     it), or give the credential again"
                ))
            }
            v => {
                return Err(format!(
                    "the git credential of app {app} is sealed in format {v}, which this Berth \
                     does not know: upgrade it"
                ))
            }
        };
        serde_json::from_slice(&plain).map_err(|e| format!("sealed credential is malformed: {e}"))
    }

    /// Opens a blob sealed before credentials were bound to their app (no associated data).
    /// Only for re-sealing it bound (the coordinator's start) and for masking: never to hand
    /// the credential to git, since such a blob could have been copied from another app.
    pub fn open_unbound(key: &SecretKey, sealed: &Sealed) -> Result<GitCredential, String> {
        if sealed.v != SEALED_UNBOUND {
            return Err("the sealed credential is bound to an app".into());
        }
        let plain = key.open(sealed)?;
        serde_json::from_slice(&plain).map_err(|e| format!("sealed credential is malformed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let key = SecretKey::generate();
        let cred = GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: "ghp_secret123".into(),
        };
        let sealed = cred.seal(&key, "web");
        let bytes = rmp_serde::to_vec_named(&sealed).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("ghp_secret123"));
        assert_eq!(GitCredential::open(&key, "web", &sealed).unwrap(), cred);
        assert!(GitCredential::open(&SecretKey::generate(), "web", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.data[0] ^= 1;
        assert!(GitCredential::open(&key, "web", &tampered).is_err());
        assert_ne!(
            cred.seal(&key, "web").nonce,
            sealed.nonce,
            "fresh nonce each time"
        );
    }

    #[test]
    fn sealed_variables_open_only_as_their_apps() {
        let key = SecretKey::generate();
        let values: std::collections::BTreeMap<String, String> =
            [("TOKEN".to_string(), "t0ken-value".to_string())].into();
        let sealed = seal_env(&key, "shop", &values);
        assert_eq!(sealed.v, SEALED_BOUND);
        assert!(!String::from_utf8_lossy(&sealed.data).contains("t0ken-value"));
        assert_eq!(open_env(&key, "shop", &sealed).unwrap(), values);
        assert!(open_env(&key, "other", &sealed).is_err());
        assert!(open_env(&SecretKey::generate(), "shop", &sealed).is_err());
        // Not interchangeable with the app's other sealed secrets.
        assert!(open_webhook_secret(&key, "shop", &sealed).is_err());
    }

    #[test]
    fn a_sealed_credential_opens_only_as_its_apps() {
        let key = SecretKey::generate();
        let cred = GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: "ghp_secret123".into(),
        };
        let sealed = cred.seal(&key, "web");
        let e = GitCredential::open(&key, "evil", &sealed).unwrap_err();
        assert!(e.contains("sealed for another app"), "{e}");
        // Claiming the old format does not help: it has no associated data.
        let mut downgraded = sealed.clone();
        downgraded.v = SEALED_UNBOUND;
        assert!(GitCredential::open(&key, "web", &downgraded).is_err());
        assert!(GitCredential::open_unbound(&key, &downgraded).is_err());
        assert!(GitCredential::open_unbound(&key, &sealed).is_err());
    }

    #[test]
    fn an_older_blob_decodes_and_opens_only_unbound() {
        let key = SecretKey::generate();
        let cred = GitCredential::SshKey {
            private_key: "-----BEGIN x".into(),
            known_hosts: None,
        };
        // What an older version stored: no `v`, no associated data.
        #[derive(Serialize)]
        struct Old {
            #[serde(with = "serde_bytes_vec")]
            nonce: Vec<u8>,
            #[serde(with = "serde_bytes_vec")]
            data: Vec<u8>,
        }
        let s = key.seal(&serde_json::to_vec(&cred).unwrap());
        let bytes = rmp_serde::to_vec_named(&Old {
            nonce: s.nonce,
            data: s.data,
        })
        .unwrap();
        let old: Sealed = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(old.v, SEALED_UNBOUND);
        let e = GitCredential::open(&key, "web", &old).unwrap_err();
        assert!(e.contains("re-sealed"), "{e}");
        let opened = GitCredential::open_unbound(&key, &old).unwrap();
        assert_eq!(opened, cred);
        let resealed = opened.seal(&key, "web");
        assert_eq!(GitCredential::open(&key, "web", &resealed).unwrap(), cred);
    }

    #[test]
    fn key_hex_round_trip_and_debug_hides() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
        let c = GitCredential::HttpsToken {
            username: "u".into(),
            token: "tok-secret".into(),
        };
        assert!(!format!("{c:?}").contains("tok-secret"));
    }

    #[test]
    fn credential_json_and_validation() {
        let c: GitCredential =
            serde_json::from_str(r#"{"kind":"https_token","token":"abc"}"#).unwrap();
        assert_eq!(c.kind(), "https_token");
        assert!(c.validate().is_ok());
        let bad: GitCredential =
            serde_json::from_str(r#"{"kind":"https_token","token":"a b"}"#).unwrap();
        assert!(bad.validate().is_err());
        let ssh: GitCredential =
            serde_json::from_str(r#"{"kind":"ssh_key","private_key":"nope"}"#).unwrap();
        assert!(ssh.validate().is_err());
    }
}
