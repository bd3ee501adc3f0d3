//! `[tls]`: the TLS listener and the files both sides use, with Redis's own
//! option names, turned into rustls configurations.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::tls::ClientAuth;

/// `[tls]`, with Redis's own option names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Address of the TLS listener ("" for none).
    pub listen: String,
    /// The listener's certificate chain (PEM).
    pub cert_file: String,
    /// The listener's private key (PEM: PKCS#8, RSA or EC).
    pub key_file: String,
    /// The CA that verifies client certificates and the certificates of
    /// `rediss://` masters and backend (without it: the system's roots).
    pub ca_cert_file: String,
    /// Whether TLS clients must present a certificate signed by the CA.
    pub auth_clients: ClientAuth,
    /// The certificate the proxy presents to `rediss://` servers that require one.
    pub client_cert_file: String,
    /// Its private key.
    pub client_key_file: String,
    /// Check that a `rediss://` server's certificate names the URL's host.
    pub verify_hostname: bool,
    /// How long a client's TLS handshake may take.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            ca_cert_file: String::new(),
            auth_clients: ClientAuth::No,
            client_cert_file: String::new(),
            client_key_file: String::new(),
            verify_hostname: true,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

fn path(s: &str) -> Option<&Path> {
    (!s.is_empty()).then(|| Path::new(s))
}

impl TlsConfig {
    /// The listener's rustls configuration, when there is a TLS listener.
    pub fn server(&self) -> Result<Option<rustls::ServerConfig>, (&'static str, String)> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (path(&self.cert_file), path(&self.key_file)) else {
            let missing = if self.cert_file.is_empty() {
                "tls.cert_file"
            } else {
                "tls.key_file"
            };
            return Err((missing, "tls.listen needs a certificate and its key".into()));
        };
        crate::tls::server_config(cert, key, path(&self.ca_cert_file), self.auth_clients)
            .map(Some)
            .map_err(|(part, e)| (self.option(part), e))
    }

    /// The rustls configuration of `rediss://` connections.
    pub fn client(&self) -> Result<rustls::ClientConfig, (&'static str, String)> {
        let identity = match (path(&self.client_cert_file), path(&self.client_key_file)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err((
                    "tls.client_key_file",
                    "tls.client_cert_file needs its key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    "tls.client_cert_file",
                    "tls.client_key_file needs its certificate".into(),
                ));
            }
        };
        crate::tls::client_config(path(&self.ca_cert_file), identity, self.verify_hostname)
            .map_err(|(part, e)| (self.option(part), e))
    }

    fn option(&self, part: crate::tls::Part) -> &'static str {
        use crate::tls::Part;
        match part {
            Part::Cert => "tls.cert_file",
            Part::Key => "tls.key_file",
            Part::Ca => "tls.ca_cert_file",
            Part::ClientCert => "tls.client_cert_file",
            Part::ClientKey => "tls.client_key_file",
        }
    }
}
