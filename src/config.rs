//! Configuration, read once at start-up: compiled-in defaults (the text of
//! `config/default.toml`) < a file given with `--config` < `DATABASE_URL` <
//! `PROMPTREG_*` environment variables < command-line flags. The only module
//! that reads the environment.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::auth::Scope;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    /// The label a request means when it names no version.
    pub default_ref: String,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub log_level: String,
    /// `pr_` and at least 32 letters and digits: `serve` makes sure an admin
    /// key with exactly this secret exists. Empty: none.
    pub init_admin_key: Redacted,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    /// Token buckets per key, one per scope a route requires.
    pub rate_limit: HashMap<Scope, RateLimit>,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second (may be fractional: 0.5 is one every 2 s).
    pub per_second: f64,
    /// Bucket size: how many requests may come at once.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 200,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    /// Dataset item uploads, which stream rather than buffer.
    pub upload_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// Origins browsers may call the API from (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Immutable versions kept in memory, by id and by exact semver.
    pub max_versions: u64,
    /// Prompts whose label resolutions are kept in memory.
    pub max_prompts: u64,
    /// Compiled templates kept in memory, by version and partials.
    pub max_compiled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Values given on the command line; they win over every other source.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let config = figment
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(
                Env::prefixed("PROMPTREG_")
                    .filter(is_config_key)
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()?;
        Ok(config)
    }

    /// The defaults alone, as tests and tools start from.
    pub fn defaults() -> anyhow::Result<Self> {
        Ok(Figment::from(Toml::string(DEFAULTS)).extract()?)
    }
}

/// Whether a `PROMPTREG_*` variable (prefix stripped) names a configuration
/// key; others (`PROMPTREG_URL` of the client commands, say) are not ours.
fn is_config_key(key: &figment::value::UncasedStr) -> bool {
    let top = key.as_str().split("__").next().unwrap_or_default();
    Figment::from(Toml::string(DEFAULTS))
        .find_value(&top.to_ascii_lowercase())
        .is_ok()
}

/// Whether `RUST_LOG` is set; it then replaces `log_level`.
pub fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
mod tests {
    use super::*;

    #[test]
    fn compiled_defaults_parse() {
        let config = Config::defaults().expect("defaults parse");
        assert_eq!(config.database_url, "sqlite://data/promptreg.db");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.http.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.default_ref, "production");
        assert_eq!(config.init_admin_key, Redacted::default());
        assert_eq!(
            config.rate_limit.len(),
            Scope::ALL.len(),
            "every scope has a limit"
        );
        assert!(format!("{:?}", Redacted("pr_secret".into())).contains("***"));
    }

    #[test]
    fn rate_limits_merge_per_scope() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "limits.toml",
                "[rate_limit.read]\nburst = 3\nper_second = 1\n",
            )?;
            jail.set_env(
                "PROMPTREG_INIT_ADMIN_KEY",
                "pr_0123456789abcdef0123456789abcdef",
            );
            let config =
                Config::load(Some(Path::new("limits.toml")), &Overrides::default()).expect("load");
            assert_eq!(
                config.rate_limit[&Scope::Read],
                RateLimit {
                    per_second: 1.0,
                    burst: 3
                }
            );
            assert_eq!(
                config.rate_limit[&Scope::Write],
                Config::defaults().expect("defaults").rate_limit[&Scope::Write]
            );
            assert_eq!(
                config.init_admin_key.0,
                "pr_0123456789abcdef0123456789abcdef"
            );
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "promptreg.toml",
                "bind = \"127.0.0.1:9000\"\n[http]\nrequest_timeout_secs = 5\n",
            )?;
            jail.set_env("DATABASE_URL", "postgres://from-plain-env/db");
            jail.set_env("PROMPTREG_HTTP__REQUEST_TIMEOUT_SECS", "7");
            jail.set_env("PROMPTREG_TOKEN", "not a config key");
            let file = Path::new("promptreg.toml");

            let config = Config::load(Some(file), &Overrides::default()).expect("load");
            assert_eq!(config.bind.to_string(), "127.0.0.1:9000");
            assert_eq!(config.http.request_timeout_secs, 7);
            assert_eq!(config.database_url, "postgres://from-plain-env/db");

            jail.set_env("PROMPTREG_DATABASE_URL", "postgres://from-prefixed-env/db");
            let flags = Overrides {
                bind: Some("127.0.0.1:9100".parse().expect("addr")),
                ..Overrides::default()
            };
            let config = Config::load(Some(file), &flags).expect("load");
            assert_eq!(config.database_url, "postgres://from-prefixed-env/db");
            assert_eq!(config.bind.to_string(), "127.0.0.1:9100");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "bnid = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                .expect_err("unknown key");
            assert!(err.to_string().contains("bnid"), "{err}");
            Ok(())
        });
    }
}
