//! Encryption in transit to the service's dependencies, configured from the environment.
//!
//! - Temporal: `TEMPORAL_TLS`, `TEMPORAL_TLS_CA_FILE`, `TEMPORAL_TLS_CERT_FILE` +
//!   `TEMPORAL_TLS_KEY_FILE` (mutual TLS), `TEMPORAL_TLS_SERVER_NAME`.
//! - PostgreSQL: `DATABASE_URL` carries it (`?sslmode=verify-full&sslrootcert=/path/ca.pem`).
//! - Redis: a `rediss://` `REDIS_URL`; `REDIS_TLS_CA_FILE` trusts a private CA.
//!
//! Certificate files are read and parsed at start-up, so a missing or broken file stops the
//! process naming its variable instead of failing on the first connection.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use temporalio_client::{ClientTlsOptions, TlsOptions};

use crate::env::{ConfigError, Env};

/// The contents of a PEM file named by a variable. Printing it shows the path only.
#[derive(Clone)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

impl PemFile {
    /// Reads the file `var` names, if set, and checks it holds at least one certificate.
    pub fn certificates<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        var: &'static str,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(file) = Self::read(env, var)? else {
            return Ok(None);
        };
        file.parsed_certificates(var)?;
        Ok(Some(file))
    }

    /// Reads the private key file `var` names, if set, and checks it holds a key.
    pub fn private_key<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        var: &'static str,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(file) = Self::read(env, var)? else {
            return Ok(None);
        };
        file.parsed_private_key(var)?;
        Ok(Some(file))
    }

    fn read<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        var: &'static str,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(path) = env.optional(var).map(PathBuf::from) else {
            return Ok(None);
        };
        let pem = std::fs::read(&path)
            .map_err(|e| ConfigError::new(var, format!("cannot be read ({e}): {path:?}")))?;
        Ok(Some(Self { path, pem }))
    }

    /// The certificates of the file, in order (a chain starts with the leaf).
    pub fn parsed_certificates(
        &self,
        var: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs = CertificateDer::pem_slice_iter(&self.pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.problem(var, &format!("is not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(self.problem(var, "holds no PEM certificate"));
        }
        Ok(certs)
    }

    /// The private key of the file (PKCS#8, PKCS#1 or SEC1).
    pub fn parsed_private_key(
        &self,
        var: &'static str,
    ) -> Result<PrivateKeyDer<'static>, ConfigError> {
        PrivateKeyDer::from_pem_slice(&self.pem)
            .map_err(|e| self.problem(var, &format!("holds no PEM private key ({e})")))
    }

    fn problem(&self, var: &'static str, what: &str) -> ConfigError {
        ConfigError::new(var, format!("{what}: {}", display(&self.path)))
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// How the Temporal client secures its connection.
#[derive(Debug, Clone)]
pub struct TemporalTls {
    /// `TEMPORAL_TLS_CA_FILE`: the CA that signed the frontend's certificate; without it the
    /// system's roots are trusted (Temporal Cloud).
    pub server_ca: Option<PemFile>,
    /// `TEMPORAL_TLS_CERT_FILE` and `TEMPORAL_TLS_KEY_FILE`: this process's certificate and key
    /// for mutual TLS.
    pub client_identity: Option<(PemFile, PemFile)>,
    /// `TEMPORAL_TLS_SERVER_NAME`: the name the frontend's certificate must carry, when it is not
    /// the host of `TEMPORAL_ADDRESS` (an address by IP, a load balancer).
    pub server_name: Option<String>,
}

impl TemporalTls {
    /// `None` (plain gRPC, the local dev server) unless `TEMPORAL_TLS=1`, an `https://`
    /// `TEMPORAL_ADDRESS`, or any `TEMPORAL_TLS_*` setting asks for TLS.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        let server_ca = PemFile::certificates(env, "TEMPORAL_TLS_CA_FILE")?;
        let cert = PemFile::certificates(env, "TEMPORAL_TLS_CERT_FILE")?;
        let key = PemFile::private_key(env, "TEMPORAL_TLS_KEY_FILE")?;
        let server_name = env.optional("TEMPORAL_TLS_SERVER_NAME");
        let client_identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TEMPORAL_TLS_KEY_FILE",
                    "is required with TEMPORAL_TLS_CERT_FILE (mutual TLS needs both)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TEMPORAL_TLS_CERT_FILE",
                    "is required with TEMPORAL_TLS_KEY_FILE (mutual TLS needs both)",
                ));
            }
        };
        let https = env
            .optional("TEMPORAL_ADDRESS")
            .is_some_and(|a| a.starts_with("https://"));
        let asked = server_ca.is_some() || client_identity.is_some() || server_name.is_some();
        let enabled = env.flag("TEMPORAL_TLS", https || asked)?;
        if !enabled && asked {
            return Err(ConfigError::new(
                "TEMPORAL_TLS",
                "is off while TEMPORAL_TLS_* files or a server name are set",
            ));
        }
        Ok(enabled.then_some(Self {
            server_ca,
            client_identity,
            server_name,
        }))
    }

    /// The client library's options.
    pub fn options(&self) -> TlsOptions {
        TlsOptions::builder()
            .maybe_server_root_ca_cert(self.server_ca.as_ref().map(|ca| ca.pem.clone()))
            .maybe_domain(self.server_name.clone())
            .maybe_client_tls_options(self.client_identity.as_ref().map(|(cert, key)| {
                ClientTlsOptions::builder()
                    .client_cert(cert.pem.clone())
                    .client_private_key(key.pem.clone())
                    .build()
            }))
            .build()
    }
}

/// `REDIS_TLS_CA_FILE`: the CA of a Redis reached over `rediss://` whose certificate no public
/// root signs.
pub fn redis_ca<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<PemFile>, ConfigError> {
    let ca = PemFile::certificates(env, "REDIS_TLS_CA_FILE")?;
    if ca.is_some()
        && !env
            .optional("REDIS_URL")
            .is_some_and(|url| url.starts_with("rediss://"))
    {
        return Err(ConfigError::new(
            "REDIS_TLS_CA_FILE",
            "is set but REDIS_URL is not a rediss:// (TLS) URL",
        ));
    }
    Ok(ca)
}

/// A Redis client for `url`; a `rediss://` URL is TLS, verified against `ca` when given, else
/// against the public roots.
pub fn redis_client(url: &str, ca: Option<&PemFile>) -> redis::RedisResult<redis::Client> {
    match ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.pem.clone()),
            },
        ),
        None => redis::Client::open(url),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn plain_unless_asked() {
        assert!(TemporalTls::from_env(&env(&[])).unwrap().is_none());
        let tls = TemporalTls::from_env(&env(&[("TEMPORAL_TLS", "1")]))
            .unwrap()
            .expect("on");
        assert!(tls.server_ca.is_none() && tls.client_identity.is_none());
        let tls =
            TemporalTls::from_env(&env(&[("TEMPORAL_ADDRESS", "https://t.example:7233")])).unwrap();
        assert!(tls.is_some(), "an https address means TLS");
        let tls = TemporalTls::from_env(&env(&[("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")]))
            .unwrap()
            .expect("on");
        assert_eq!(tls.server_name.as_deref(), Some("temporal.internal"));
    }

    #[test]
    fn bad_files_and_half_an_identity_name_the_variable() {
        let err = TemporalTls::from_env(&env(&[("TEMPORAL_TLS_CA_FILE", "/nonexistent/ca.pem")]))
            .unwrap_err();
        assert_eq!(err.var, "TEMPORAL_TLS_CA_FILE");
        let dir = std::env::temp_dir().join(format!("tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_str().unwrap();
        let err = TemporalTls::from_env(&env(&[("TEMPORAL_TLS_CERT_FILE", junk)])).unwrap_err();
        assert_eq!(err.var, "TEMPORAL_TLS_CERT_FILE");
        assert!(err.problem.contains("no PEM certificate"), "{err}");
        let err = TemporalTls::from_env(&env(&[("TEMPORAL_TLS_KEY_FILE", junk)])).unwrap_err();
        assert_eq!(err.var, "TEMPORAL_TLS_KEY_FILE");
        let err = TemporalTls::from_env(&env(&[
            ("TEMPORAL_TLS", "0"),
            ("TEMPORAL_TLS_SERVER_NAME", "x"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "TEMPORAL_TLS");
        let err = redis_ca(&env(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "REDIS_TLS_CA_FILE");
        std::fs::remove_dir_all(&dir).ok();
    }
}
