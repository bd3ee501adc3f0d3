//! TLS material: certificates, keys and CAs read from PEM files, turned into
//! rustls configurations for both sides — the proxy as a TLS server (its
//! clients) and as a TLS client (`rediss://` masters and backend). Every
//! error says which file and why, so configuration can name the option.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;

/// Whether clients of the TLS listener must present a certificate signed by
/// the CA (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    No,
    /// A certificate is asked for and verified when presented.
    Optional,
    /// A certificate signed by the CA is required.
    Yes,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no" => Ok(ClientAuth::No),
            "optional" => Ok(ClientAuth::Optional),
            "yes" => Ok(ClientAuth::Yes),
            other => Err(format!("{other:?}: expected no, optional or yes")),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    for c in &certs {
        webpki_parse(c).map_err(|e| format!("{}: not a valid certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

fn webpki_parse(c: &CertificateDer<'_>) -> Result<(), String> {
    rustls::server::ParsedCertificate::try_from(c)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no private key in it: {e}", path.display()))
}

/// The CA certificates of a PEM file, as roots.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's roots, for `rediss://` servers when no CA file is given.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for c in found.certs {
        let _ = roots.add(c);
    }
    roots
}

/// Which file failed, for configuration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The listener's certificate.
    Cert,
    /// The listener's key.
    Key,
    /// The CA file.
    Ca,
    /// The certificate presented to servers.
    ClientCert,
    /// Its key.
    ClientKey,
}

/// The TLS server side: the listener's certificate and key, and the client
/// verification `auth` asks for against `ca`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    auth: ClientAuth,
) -> Result<ServerConfig, (Part, String)> {
    let certs = load_certs(cert).map_err(|e| (Part::Cert, e))?;
    let key_der = load_key(key).map_err(|e| (Part::Key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| (Part::Cert, e.to_string()))?;
    let builder = match (auth, ca) {
        (ClientAuth::No, _) => builder.with_no_client_auth(),
        (_, None) => return Err((Part::Ca, "client authentication needs a CA file".into())),
        (auth, Some(ca)) => {
            let roots = Arc::new(load_roots(ca).map_err(|e| (Part::Ca, e))?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let v = if auth == ClientAuth::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| (Part::Ca, e.to_string()))?)
        }
    };
    builder
        .with_single_cert(certs, key_der)
        .map_err(|e| (Part::Key, format!("{}: {e}", key.display())))
}

/// The TLS client side: servers verified against `ca` (the system roots
/// without one), the host name checked when `verify_hostname`, and the
/// client certificate presented when given.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    verify_hostname: bool,
) -> Result<ClientConfig, (Part, String)> {
    let roots = match ca {
        Some(ca) => load_roots(ca).map_err(|e| (Part::Ca, e))?,
        None => system_roots(),
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| (Part::Ca, e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| (Part::Ca, e.to_string()))?;
    let builder = if verify_hostname {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = load_certs(cert).map_err(|e| (Part::ClientCert, e))?;
            let key_der = load_key(key).map_err(|e| (Part::ClientKey, e))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| (Part::ClientKey, format!("{}: {e}", key.display())))
        }
    }
}

/// Verifies the chain but not the host name, as Redis's own tools do by
/// default (`verify_hostname = false`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The client configuration every `rediss://` connection uses, replaced on a
/// reload (new connections take the new one).
#[derive(Debug, Clone)]
pub struct TlsClient(Arc<ArcSwap<ClientConfig>>);

impl TlsClient {
    /// A handle over `config`.
    pub fn new(config: ClientConfig) -> Self {
        TlsClient(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.0.load_full()
    }

    /// Replaces it (a reload).
    pub fn replace(&self, config: ClientConfig) {
        self.0.store(Arc::new(config));
    }
}
