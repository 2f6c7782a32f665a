//! HTTPS for the gateway: `API_TLS_CERT_FILE` (the certificate chain, leaf first) and
//! `API_TLS_KEY_FILE` (its private key), both PEM. Without them the gateway speaks plain HTTP,
//! as it does locally and behind a TLS-terminating load balancer.
//!
//! The acceptor is ours rather than poem's `RustlsListener`: poem's builds on the aws-lc-rs
//! provider, while everything else in the service (the Temporal client, reqwest, sqlx, redis)
//! uses ring, and one process with two rustls providers has no default to fall back on. The
//! handshake runs inside the accepted connection's first reads, so a client that stalls its
//! handshake holds only its own connection (and the read deadline of `read_deadline` cuts it).

use std::io::Result as IoResult;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use delivery_platform::{ConfigError, Env, PemFile};
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::server::TlsStream;

/// The gateway's TLS settings, checked at start-up.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PemFile,
    pub key: PemFile,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// `None` unless both `API_TLS_CERT_FILE` and `API_TLS_KEY_FILE` are set; one without the
    /// other, an unreadable file or a key that does not match the certificate is an error.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        let cert = PemFile::certificates(env, "API_TLS_CERT_FILE")?;
        let key = PemFile::private_key(env, "API_TLS_KEY_FILE")?;
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "API_TLS_KEY_FILE",
                    "is required with API_TLS_CERT_FILE",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "API_TLS_CERT_FILE",
                    "is required with API_TLS_KEY_FILE",
                ));
            }
        };
        let chain = cert.parsed_certificates("API_TLS_CERT_FILE")?;
        let private_key = key.parsed_private_key("API_TLS_KEY_FILE")?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("API_TLS_CERT_FILE", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| {
                ConfigError::new(
                    "API_TLS_KEY_FILE",
                    format!("does not fit API_TLS_CERT_FILE ({e})"),
                )
            })?;
        // The server speaks both; hyper picks by what was negotiated.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Self {
            cert,
            key,
            config: Arc::new(config),
        }))
    }
}

/// Wraps an acceptor's connections in TLS.
pub struct TlsAcceptor<A> {
    inner: A,
    tls: tokio_rustls::TlsAcceptor,
}

impl<A> TlsAcceptor<A> {
    pub fn new(inner: A, tls: &ServerTls) -> Self {
        Self {
            inner,
            tls: tokio_rustls::TlsAcceptor::from(tls.config.clone()),
        }
    }
}

impl<A: Acceptor> Acceptor for TlsAcceptor<A>
where
    A::Io: Unpin,
{
    type Io = Handshaking<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, _) = self.inner.accept().await?;
        Ok((
            Handshaking::Pending(Box::new(self.tls.accept(io))),
            local,
            remote,
            Scheme::HTTPS,
        ))
    }
}

impl<T: crate::connection_limit::SendBuffer> crate::connection_limit::SendBuffer
    for Handshaking<T>
{
    fn cap_send_buffer(&self, bytes: usize) -> IoResult<()> {
        match self {
            Handshaking::Ready(stream) => stream.get_ref().0.cap_send_buffer(bytes),
            // Nothing is answered before the handshake.
            Handshaking::Pending(_) => Ok(()),
        }
    }
}

/// A TLS connection whose handshake completes on its first read or write.
pub enum Handshaking<T> {
    Pending(Box<tokio_rustls::Accept<T>>),
    Ready(Box<TlsStream<T>>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> Handshaking<T> {
    fn poll_stream(&mut self, cx: &mut Context<'_>) -> Poll<IoResult<&mut TlsStream<T>>> {
        if let Handshaking::Pending(accept) = self {
            let stream = ready!(Pin::new(accept.as_mut()).poll(cx))?;
            *self = Handshaking::Ready(Box::new(stream));
        }
        match self {
            Handshaking::Ready(stream) => Poll::Ready(Ok(stream)),
            Handshaking::Pending(_) => unreachable!("the handshake completed above"),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Handshaking<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Handshaking<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<IoResult<usize>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        match self.get_mut() {
            // Nothing was said yet: closing the socket is enough.
            Handshaking::Pending(_) => Poll::Ready(Ok(())),
            Handshaking::Ready(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
