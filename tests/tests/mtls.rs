//! Mutual TLS with certificates generated here: a client certificate's
//! subject names the principal; tokens still work over TLS; unknown
//! subjects, foreign CAs and plaintext are refused.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use truce_auth::{PrincipalsFile, Role};
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient, query_service_client::QueryServiceClient};
use truce_serve::auth::{Access, AuthMode, TlsFiles};
use truce_tests::{Pair, crossing_report, request, secure::with_token};

/// A CA able to issue certificates.
struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("self-signed CA");
        Authority {
            pem: certificate.pem(),
            certificate,
            key,
        }
    }

    /// A certificate for `common_name` (and the name "localhost"), with its
    /// key, as PEM.
    fn issue(&self, common_name: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("signed");
        (certificate.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a PEM file");
    path
}

async fn channel(addr: std::net::SocketAddr, ca: &str, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((certificate, key)) = identity {
        tls = tls.identity(Identity::from_pem(certificate, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn client_certificates_name_principals_and_strangers_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::new("truce test CA");
    let (server_cert, server_key) = ca.issue("truce");
    let egypt = ca.issue("egypt-monitor");
    let stranger = ca.issue("nobody");
    let reader = ca.issue("un-reader");
    let foreign = Authority::new("someone else's CA").issue("egypt-monitor");

    let file = PrincipalsFile::new(dir.path().join("principals.json"));
    file.add_certificate(
        "egypt-monitor",
        &"egypt".parse().expect("party"),
        &[Role::Monitor],
        "CN=egypt-monitor",
    )
    .expect("add");
    file.add_certificate(
        "un-reader",
        &"un".parse().expect("party"),
        &[Role::Observer],
        "CN=un-reader",
    )
    .expect("add");
    let idf_token = file
        .add("idf-desk", &"idf".parse().expect("party"), &[Role::Reporter])
        .expect("add")
        .token;
    let access = Access {
        mode: AuthMode::Tokens(file),
        limits: Default::default(),
        tls: Some(TlsFiles {
            certificate: write(dir.path(), "server.pem", &server_cert),
            key: write(dir.path(), "server.key", &server_key),
            client_ca: Some(write(dir.path(), "ca.pem", &ca.pem)),
        }),
        connections: Default::default(),
    };
    let pair = Pair::start_full(
        truce_ingest::IngestConfig {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        },
        truce_query::QuerySettings::default(),
        access,
    )
    .await;

    // The monitor's certificate alone authenticates it: its report carries
    // its party, taken from the principal.
    let mut as_egypt = IngestServiceClient::new(channel(pair.ingest, &ca.pem, Some(&egypt)).await.expect("mTLS"));
    let mut report = crossing_report();
    report.reporting_party.clear();
    let accepted = as_egypt
        .submit_report(request("eg-1", report))
        .await
        .expect("the certificate names a monitor, who may report")
        .into_inner();
    let mut query = QueryServiceClient::new(channel(pair.query, &ca.pem, Some(&egypt)).await.expect("mTLS"));
    let stored = query
        .get_report(v1::GetReportRequest {
            report_id: accepted.report_id,
            min_position: accepted.position,
        })
        .await
        .expect("read over mTLS")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(stored.report.expect("report").reporting_party, "egypt");

    // TLS without a client certificate: a token still works, nothing else.
    let mut anonymous = IngestServiceClient::new(channel(pair.ingest, &ca.pem, None).await.expect("TLS"));
    let status = anonymous
        .submit_report(request("", crossing_report()))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated);
    anonymous
        .submit_report(with_token(&idf_token, request("", crossing_report())))
        .await
        .expect("a token over TLS");

    // A certificate from the right CA whose subject is no principal.
    let mut nobody = IngestServiceClient::new(channel(pair.ingest, &ca.pem, Some(&stranger)).await.expect("mTLS"));
    let status = nobody
        .submit_report(request("", crossing_report()))
        .await
        .expect_err("unknown subject");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("CN=nobody"), "{status:?}");

    // A certificate from another CA, even with a known subject, does not
    // get through the handshake.
    let refused = match channel(pair.ingest, &ca.pem, Some(&foreign)).await {
        Err(_) => true,
        Ok(channel) => IngestServiceClient::new(channel)
            .submit_report(request("", crossing_report()))
            .await
            .is_err_and(|status| status.code() == Code::Unavailable || status.code() == Code::Unknown),
    };
    assert!(refused, "a foreign CA's certificate was accepted");

    // A standalone query service follows the ingest log over mutual TLS,
    // as an observer named by its certificate.
    let replica = tempfile::tempdir().expect("temp dir");
    let (listener, follower_addr) = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(truce_query::run(
        truce_query::Upstream {
            source: truce_query::Source::Ingest(truce_query::IngestUpstream {
                endpoint: format!("https://{}", pair.ingest),
                token: None,
                tls: Some(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&ca.pem))
                        .identity(Identity::from_pem(&reader.0, &reader.1)),
                ),
            }),
            replica_dir: replica.path().to_owned(),
        },
        truce_query::QuerySettings::default(),
        AuthMode::InsecureLoopback,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut follower_query = truce_tests::query_client(follower_addr).await;
    let followed = follower_query
        .get_report(v1::GetReportRequest {
            report_id: "rpt-2".into(),
            min_position: 2,
        })
        .await
        .expect("the follower reached position 2 over mTLS")
        .into_inner();
    assert_eq!(followed.report.expect("report").report_id, "rpt-2");
    let _ = stop.send(());
    follower.await.expect("join").expect("the follower stopped cleanly");

    // Plaintext to a TLS port fails.
    let plaintext = Channel::from_shared(format!("http://{}", pair.ingest))
        .expect("url")
        .connect()
        .await;
    if let Ok(plaintext) = plaintext {
        let result = IngestServiceClient::new(plaintext)
            .submit_report(request("", crossing_report()))
            .await;
        assert!(result.is_err(), "plaintext was served");
    }
    pair.stop().await;
}
