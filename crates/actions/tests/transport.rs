//! Proxy and TLS behaviour of the transport (spec §2.3, §2.4, §15.11), all on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{Mock, Reply};
use rarc_actions::{ActionsClient, Error, ProxyEnv};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn http_proxy_from_env_carries_basic_credentials() {
    // The mock plays the proxy: it receives absolute-form requests for a host that never resolves.
    let proxy = Mock::start().await;
    let target = "http://ghes.example.invalid";
    proxy.chain_with_base(HOUR, &format!("{target}/tenant/123/"));
    proxy.on(
        "GET",
        "/tenant/123/_apis/runtime/runnerscalesets/5",
        vec![Reply::json(200, serde_json::json!({"id": 5}))],
    );

    let mut config = proxy.config();
    config.config_url = format!("{target}/my-org");
    let proxy_addr = proxy.base.trim_start_matches("http://");
    config.proxy = ProxyEnv {
        http_proxy: Some(format!("user:p%40ss@{proxy_addr}")), // no scheme ⇒ http://
        https_proxy: None,
        no_proxy: Some("other.example".into()),
    };
    let client = ActionsClient::new(config).unwrap();
    assert_eq!(client.get_runner_scale_set_by_id(5).await.unwrap().id, 5);

    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:p@ss")
    );
    let log = proxy.requests();
    assert_eq!(log.len(), 3);
    for r in &log {
        assert!(
            r.uri.starts_with(&format!("{target}/")),
            "absolute-form through the proxy: {}",
            r.uri
        );
        assert_eq!(r.header("proxy-authorization"), Some(expected_auth.as_str()));
    }
    assert!(log[2].header("authorization").unwrap().starts_with("Bearer "));
}

#[tokio::test]
async fn loopback_targets_bypass_the_proxy() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    let mut config = mock.config();
    config.proxy = ProxyEnv {
        http_proxy: Some("http://127.0.0.1:9".into()),
        https_proxy: None,
        no_proxy: None,
    };
    let client = ActionsClient::new(config).unwrap();
    client.ensure_admin_token().await.unwrap();
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.header("proxy-authorization").is_none() && r.uri.starts_with('/'))
    );
}

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rarc test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

async fn tls_mock(pki: &Pki) -> Mock {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = Mock::unstarted(format!("https://localhost:{port}"));
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        pki.server_cert_pem.clone().into_bytes(),
        pki.server_key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    let app = mock.router();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    mock
}

#[tokio::test]
async fn private_ca_is_trusted_only_when_configured() {
    let pki = pki();
    let mock = tls_mock(&pki).await;
    mock.chain(HOUR);

    let mut config = mock.config();
    config.root_ca_pem = Some(pki.ca_pem.clone());
    ActionsClient::new(config).unwrap().ensure_admin_token().await.unwrap();
    assert_eq!(mock.requests().len(), 2);

    // Without the CA: a certificate error, not retried.
    let mut config = mock.config();
    config.retry.wait_min = Duration::from_secs(5);
    let started = Instant::now();
    let err = ActionsClient::new(config)
        .unwrap()
        .ensure_admin_token()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "no backoff was slept");
    assert_eq!(
        mock.requests().len(),
        2,
        "the handshake failed, so nothing reached the handler"
    );
}

#[tokio::test]
async fn invalid_root_ca_fails_at_construction() {
    let mock = Mock::unstarted("https://localhost:1".into());
    let mut config = mock.config();
    config.root_ca_pem = Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into());
    assert!(matches!(ActionsClient::new(config), Err(Error::InvalidRootCa(_))));
}
