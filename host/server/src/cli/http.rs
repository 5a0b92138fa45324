//! One request to a running server, `http://` or `https://`, as the CLI.

use super::common::{Exit, usage};
use std::path::Path;
use std::sync::Arc;

/// One request to a running server with an optional bearer token and JSON
/// body, as the CLI's actor: the status and the body text.
pub(super) async fn http(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String), Exit> {
    http_with(method, uri, token, body, None).await
}

/// [`http`], to an `http://` or `https://` server; `ca` is a PEM file of
/// the CA that signed the server's certificate (default: the public web's
/// roots).
pub(super) async fn http_with(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
    ca: Option<&Path>,
) -> Result<(u16, String), Exit> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match ca {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| usage(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .build()
        }
        None => builder
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| usage(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build(),
    };
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-switchyard-actor", "cli");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| usage(format!("--server: {e}")))?;
    let resp = client.request(req).await.map_err(|e| {
        usage(format!(
            "{uri}: {e:?}; is the server running (and is it http or https)?"
        ))
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| usage(format!("{uri}: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
