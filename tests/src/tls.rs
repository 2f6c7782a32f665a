//! TLS for the tests: a certificate authority made by the test itself (nothing is trusted that
//! the test did not make); a TLS-terminating proxy in front of the plaintext Temporal dev server
//! (with or without mutual TLS) or of the machine's PostgreSQL; and a private Redis that speaks
//! TLS only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A CA and the files of what it signed, in a directory of their own (removed on drop).
pub struct TestCa {
    pub dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and as files.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "delivery-tests-ca-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("delivery tests CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a self-signed CA");
        let ca = Self { dir, issuer };
        std::fs::write(ca.ca_file(), ca.ca_pem()).expect("writing the CA");
        ca
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, name: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    /// A client certificate for mutual TLS.
    pub fn client(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name, params)
    }

    fn issue(&self, name: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file: self.dir.join(format!("{name}.pem")),
            key_file: self.dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&issued.cert_file, &issued.cert_pem).expect("writing a certificate");
        std::fs::write(&issued.key_file, &issued.key_pem).expect("writing a key");
        issued
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

impl Issued {
    pub fn cert_path(&self) -> String {
        path_str(&self.cert_file)
    }

    pub fn key_path(&self) -> String {
        path_str(&self.key_file)
    }
}

impl TestCa {
    pub fn ca_path(&self) -> String {
        path_str(&self.ca_file())
    }
}

/// TLS in front of a plaintext TCP server: what a TLS-terminating load balancer does in front of
/// a Temporal frontend (TLS from the first byte, h2 by ALPN as gRPC clients require), or what a
/// PostgreSQL server with `ssl = on` and only `hostssl` rules does (the client asks for TLS with
/// an `SSLRequest`, and a client that does not is turned away).
pub struct TlsProxy {
    pub port: u16,
    /// Handshakes that completed (the client trusted us and, with mutual TLS, we trusted it).
    pub sessions: Arc<AtomicUsize>,
    /// Handshakes that failed, and PostgreSQL clients that did not ask for TLS.
    pub refused: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

/// How a client opens a connection before its TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// TLS from the first byte, with h2 offered by ALPN (gRPC).
    Grpc,
    /// PostgreSQL's `SSLRequest` (length 8, code 80877103), answered `S`.
    PostgresSslRequest,
}

/// The 8 bytes of PostgreSQL's `SSLRequest`: the message length, then the request code.
const POSTGRES_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl TlsProxy {
    /// Terminates TLS with `server` (issued by `ca`) in front of a gRPC server; with
    /// `require_client_cert`, only clients with a certificate of `ca` get through.
    pub async fn start(
        upstream: SocketAddr,
        ca: &TestCa,
        server: &Issued,
        require_client_cert: bool,
    ) -> Self {
        Self::serve(upstream, ca, server, require_client_cert, Opening::Grpc).await
    }

    /// Terminates PostgreSQL's TLS with `server` (issued by `ca`) in front of a plaintext
    /// PostgreSQL: a client must ask for TLS and trust `ca`; one that sends its startup message
    /// in clear is refused, as `hostssl`-only rules refuse it.
    pub async fn postgres(upstream: SocketAddr, ca: &TestCa, server: &Issued) -> Self {
        Self::serve(upstream, ca, server, false, Opening::PostgresSslRequest).await
    }

    async fn serve(
        upstream: SocketAddr,
        ca: &TestCa,
        server: &Issued,
        require_client_cert: bool,
        opening: Opening,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).expect("CA PEM"))
                .expect("CA root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("server key");
        let mut config = builder.with_single_cert(chain, key).expect("server config");
        if opening == Opening::Grpc {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("bound").port();
        let sessions = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn({
            let (sessions, refused) = (sessions.clone(), refused.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let (acceptor, sessions, refused) =
                        (acceptor.clone(), sessions.clone(), refused.clone());
                    tokio::spawn(async move {
                        if opening == Opening::PostgresSslRequest
                            && !ssl_requested(&mut client).await
                        {
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        let Ok(mut tls) = acceptor.accept(client).await else {
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        sessions.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                        }
                    });
                }
            }
        });
        Self {
            port,
            sessions,
            refused,
            accept,
        }
    }

    /// The proxy's address as a Temporal client takes it.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Reads a PostgreSQL client's first message and, when it is an `SSLRequest`, agrees to TLS.
async fn ssl_requested(client: &mut TcpStream) -> bool {
    let mut opening = [0u8; 8];
    if client.read_exact(&mut opening).await.is_err() || opening != POSTGRES_SSL_REQUEST {
        return false;
    }
    client.write_all(b"S").await.is_ok()
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A private `redis-server` on loopback whose plaintext port is off: it speaks TLS only, with a
/// certificate of the test's CA, as a managed Redis with encryption in transit does. Stopped
/// when dropped.
pub struct TlsRedis {
    pub port: u16,
    child: std::process::Child,
}

impl TlsRedis {
    pub async fn start(ca: &TestCa, server: &Issued) -> Self {
        let port = crate::free_port();
        let child = std::process::Command::new(
            std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        )
        .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port"])
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(&server.cert_file)
        .arg("--tls-key-file")
        .arg(&server.key_file)
        .arg("--tls-ca-cert-file")
        .arg(ca.ca_file())
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&ca.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Debian's is built with TLS)");
        let redis = Self { port, child };
        let client = redis.client(ca);
        crate::eventually("the TLS Redis answers", || async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        })
        .await;
        redis
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// A client trusting `ca`, as the gateway and the worker make it.
    pub fn client(&self, ca: &TestCa) -> redis::Client {
        let ca = delivery_platform::tls::PemFile {
            path: ca.ca_file(),
            pem: ca.ca_pem().into_bytes(),
        };
        delivery_platform::redis_client(&self.url(), Some(&ca)).expect("a rediss:// client")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
