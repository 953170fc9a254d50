//! Who may call which route: named bearer tokens with roles (`[[auth.tokens]]`).
//!
//! A request proves a token either as `Authorization: Bearer <token>` or as HTTP basic auth with
//! the token's name as the user and the token as the password: Prometheus and Alertmanager can
//! send both. Only SHA-256 digests of the tokens are kept in memory, and a presented token is
//! compared against every one of them in constant time, so neither the answer nor its timing
//! says how much of a guess was right. Tokens are never logged; token names are.

use std::path::Path;

use base64::Engine as _;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, Role, TokenConfig};

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the board's static page, unknown routes).
    Public,
    /// `/metrics`: public unless `auth.metrics_public = false`.
    Metrics,
    /// `/-/healthy`, `/-/ready`: public unless `auth.health_public = false`.
    Health,
    /// Reading the API: any valid token, whatever its roles.
    Read,
    /// A token holding this role (or `admin`).
    Role(Role),
}

/// Why a request was refused: 401 for all but the last, 403 for the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or credentials in a form we do not read.
    Missing,
    /// Credentials that match no token.
    Invalid,
    /// More than one `Authorization` header: ambiguous (which one would a proxy in front have
    /// checked?), so none is taken, whatever they hold.
    Ambiguous,
    /// A valid token without the role the route needs.
    Forbidden { name: String, need: Role },
}

impl Denied {
    /// The `reason` label of `triaged_http_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            // Counted as credentials that prove no token, as before it had its own answer.
            Denied::Invalid | Denied::Ambiguous => "invalid",
            Denied::Forbidden { .. } => "forbidden",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Its token file cannot be read, or holds no token.
    #[error("auth.tokens {name:?}: {why}")]
    File { name: String, why: String },
}

struct Token {
    name: String,
    digest: [u8; 32],
    roles: Vec<Role>,
}

impl Token {
    fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|&r| r == role || r == Role::Admin)
    }
}

/// The tokens in force; swapped whole on reload.
pub struct Auth {
    required: bool,
    metrics_public: bool,
    health_public: bool,
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Auth")
            .field("required", &self.required)
            .field("tokens", &names)
            .finish()
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The token a token file holds (its first line, surrounding whitespace trimmed), or why it
/// holds none. The config's check reads it too ([`crate::config::Checks::files`]).
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let resolved = crate::config::resolve_file(path)?;
    let text = std::fs::read_to_string(&resolved)
        .map_err(|e| format!("cannot read token_file {}: {e}", resolved.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("token_file {} holds no token", resolved.display()));
    }
    Ok(token)
}

fn read_token(config: &TokenConfig, path: &Path) -> Result<String, AuthError> {
    let token = read_token_file(path).map_err(|why| AuthError::File {
        name: config.name.clone(),
        why,
    })?;
    if let Ok(resolved) = crate::config::resolve_file(path) {
        warn_if_readable_by_others(&config.name, &resolved);
    }
    Ok(token)
}

/// A token file others can read is a leak waiting to happen, except in systemd's credentials
/// directory: only the service can read that, whatever the mode shows (systemd gives the
/// service's user an ACL entry, which shows in the group bits).
fn warn_if_readable_by_others(name: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if crate::config::is_credential(path) {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(token = %name, path = %path.display(), "token file is readable by other users; chmod 600 it (or load it with systemd's LoadCredential=)");
        }
    }
}

impl Auth {
    /// No authentication: every route is open.
    pub fn off() -> Auth {
        Auth {
            required: false,
            metrics_public: true,
            health_public: true,
            tokens: Vec::new(),
        }
    }

    /// Read every token file named by a validated `[auth]`.
    pub fn load(config: &AuthConfig) -> Result<Auth, AuthError> {
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for t in &config.tokens {
            let secret = match (&t.token_file, &t.token) {
                (Some(path), _) => read_token(t, path)?,
                (None, Some(inline)) => inline.trim().to_string(),
                // Validation refuses a token without either.
                (None, None) => continue,
            };
            if secret.len() < 16 {
                tracing::warn!(token = %t.name, "token is shorter than 16 characters; use a long random one");
            }
            tokens.push(Token {
                name: t.name.clone(),
                digest: digest(secret.as_bytes()),
                roles: t.roles.clone(),
            });
        }
        Ok(Auth {
            required: config.required(),
            metrics_public: config.metrics_public,
            health_public: config.health_public,
            tokens,
        })
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// Admit or refuse a request. `Ok(Some(name))` names the token that was used.
    pub fn check(&self, headers: &HeaderMap, access: Access) -> Result<Option<String>, Denied> {
        let open = !self.required
            || match access {
                Access::Public => true,
                Access::Metrics => self.metrics_public,
                Access::Health => self.health_public,
                Access::Read | Access::Role(_) => false,
            };
        let presented = credentials(headers);
        if open {
            // A valid token still names the caller (e.g. the actor of an action).
            return Ok(presented
                .ok()
                .and_then(|c| self.find(&c))
                .map(|t| t.name.clone()));
        }
        let token = self.find(&presented?).ok_or(Denied::Invalid)?;
        match access {
            Access::Role(need) if !token.has(need) => Err(Denied::Forbidden {
                name: token.name.clone(),
                need,
            }),
            _ => Ok(Some(token.name.clone())),
        }
    }

    /// The token these credentials prove, comparing against every token (no early exit).
    fn find(&self, presented: &Credentials) -> Option<&Token> {
        let (user, secret) = match presented {
            Credentials::Bearer(secret) => (None, secret.as_slice()),
            Credentials::Basic { user, password } => (Some(user.as_str()), password.as_slice()),
        };
        let d = digest(secret);
        let mut found = None;
        for token in &self.tokens {
            let matches = same(&token.digest, &d);
            if matches && user.is_none_or(|u| u == token.name) {
                found = Some(token);
            }
        }
        found
    }
}

enum Credentials {
    Bearer(Vec<u8>),
    Basic { user: String, password: Vec<u8> },
}

fn credentials(headers: &HeaderMap) -> Result<Credentials, Denied> {
    let mut given = headers.get_all(AUTHORIZATION).iter();
    let value = given.next().ok_or(Denied::Missing)?;
    // Two credentials are ambiguous (which one would a proxy in front have checked?): neither.
    if given.next().is_some() {
        return Err(Denied::Ambiguous);
    }
    let value = value.to_str().map_err(|_| Denied::Invalid)?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(Denied::Invalid)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(Denied::Invalid);
        }
        Ok(Credentials::Bearer(rest.as_bytes().to_vec()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| Denied::Invalid)?;
        let text = String::from_utf8(decoded).map_err(|_| Denied::Invalid)?;
        let (user, password) = text.split_once(':').ok_or(Denied::Invalid)?;
        Ok(Credentials::Basic {
            user: user.to_string(),
            password: password.as_bytes().to_vec(),
        })
    } else {
        Err(Denied::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn auth() -> Auth {
        let config: AuthConfig = toml::from_str(
            r#"
            [[tokens]]
            name = "prometheus"
            token = "ingest-secret-0123456789"
            allow_inline = true
            roles = ["ingest"]
            [[tokens]]
            name = "noc"
            token = "operator-secret-0123456789"
            allow_inline = true
            roles = ["operator"]
            [[tokens]]
            name = "root"
            token = "admin-secret-0123456789"
            allow_inline = true
            roles = ["admin"]
            "#,
        )
        .unwrap();
        Auth::load(&config).unwrap()
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        with(&format!("Basic {encoded}"))
    }

    #[test]
    fn roles_decide_what_a_valid_token_may_do() {
        let a = auth();
        let ingest = with("Bearer ingest-secret-0123456789");
        let operator = with("bearer operator-secret-0123456789");
        let admin = with("Bearer admin-secret-0123456789");
        assert_eq!(
            a.check(&ingest, Access::Role(Role::Ingest)),
            Ok(Some("prometheus".into()))
        );
        assert_eq!(
            a.check(&ingest, Access::Role(Role::Operator)),
            Err(Denied::Forbidden {
                name: "prometheus".into(),
                need: Role::Operator
            })
        );
        assert!(a.check(&ingest, Access::Read).is_ok());
        assert!(a.check(&operator, Access::Role(Role::Operator)).is_ok());
        assert!(a.check(&operator, Access::Role(Role::Admin)).is_err());
        assert!(a.check(&operator, Access::Role(Role::Ingest)).is_err());
        for role in [Role::Ingest, Role::Operator, Role::Admin] {
            assert!(a.check(&admin, Access::Role(role)).is_ok(), "{role:?}");
        }
    }

    #[test]
    fn missing_malformed_and_wrong_credentials_are_refused() {
        let a = auth();
        let need = Access::Role(Role::Ingest);
        assert_eq!(a.check(&HeaderMap::new(), need), Err(Denied::Missing));
        assert_eq!(a.check(&with("Digest abc"), need), Err(Denied::Missing));
        for bad in [
            "Bearer",
            "Bearer wrong",
            "Bearer ingest-secret-012345678",
            "Bearer ingest-secret-01234567890",
            "Basic !!!",
            "Basic bm9jb2xvbg==",
        ] {
            assert_eq!(a.check(&with(bad), need), Err(Denied::Invalid), "{bad}");
        }
        // Two credentials, even a valid one first: refused.
        let mut two = with("Bearer ingest-secret-0123456789");
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert_eq!(a.check(&two, need), Err(Denied::Ambiguous));
        // Two identical valid ones too: still ambiguous, not "no such token".
        let mut same_twice = with("Bearer ingest-secret-0123456789");
        same_twice.append(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer ingest-secret-0123456789"),
        );
        assert_eq!(a.check(&same_twice, need), Err(Denied::Ambiguous));
        assert_eq!(Denied::Ambiguous.reason(), "invalid");
        // Public routes ignore credentials, good or bad.
        assert_eq!(a.check(&with("Bearer wrong"), Access::Public), Ok(None));
        assert_eq!(a.check(&HeaderMap::new(), Access::Metrics), Ok(None));
        assert_eq!(a.check(&HeaderMap::new(), Access::Health), Ok(None));
    }

    #[test]
    fn basic_auth_needs_the_tokens_own_name() {
        let a = auth();
        let need = Access::Role(Role::Ingest);
        assert_eq!(
            a.check(&basic("prometheus", "ingest-secret-0123456789"), need),
            Ok(Some("prometheus".into()))
        );
        assert_eq!(
            a.check(&basic("noc", "ingest-secret-0123456789"), need),
            Err(Denied::Invalid)
        );
        assert_eq!(
            a.check(&basic("prometheus", "nope"), need),
            Err(Denied::Invalid)
        );
    }

    #[test]
    fn off_admits_everyone() {
        let a = Auth::off();
        assert_eq!(
            a.check(&HeaderMap::new(), Access::Role(Role::Admin)),
            Ok(None)
        );
    }

    #[test]
    fn metrics_and_health_can_be_protected() {
        let mut a = auth();
        a.metrics_public = false;
        a.health_public = false;
        assert_eq!(
            a.check(&HeaderMap::new(), Access::Metrics),
            Err(Denied::Missing)
        );
        assert_eq!(
            a.check(&HeaderMap::new(), Access::Health),
            Err(Denied::Missing)
        );
        assert!(a
            .check(&with("Bearer ingest-secret-0123456789"), Access::Metrics)
            .is_ok());
    }

    #[test]
    fn token_files_are_read_trimmed_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "file-secret-0123456789\n").unwrap();
        let config = AuthConfig {
            tokens: vec![TokenConfig {
                name: "f".into(),
                token_file: Some(file.clone()),
                token: None,
                allow_inline: false,
                roles: vec![Role::Ingest],
            }],
            ..AuthConfig::default()
        };
        let a = Auth::load(&config).unwrap();
        assert!(a.required());
        assert!(a
            .check(
                &with("Bearer file-secret-0123456789"),
                Access::Role(Role::Ingest)
            )
            .is_ok());
        std::fs::write(&file, "\n").unwrap();
        let e = Auth::load(&config).unwrap_err().to_string();
        assert!(e.contains("holds no token") && e.contains("\"f\""), "{e}");
        std::fs::remove_file(&file).unwrap();
        let e = Auth::load(&config).unwrap_err().to_string();
        assert!(e.contains("cannot read token_file"), "{e}");
    }
}
