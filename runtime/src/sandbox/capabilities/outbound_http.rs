//! The outbound HTTP hook behind `wasi:http/outgoing-handler`. wasi-http's
//! default sender resolves and connects by itself; this one instead asks the
//! gate about the host, resolves the name, checks the addresses, asks the gate
//! about the address it chose, and connects to exactly that address.

use super::address::classify;
use super::decisions::DecisionLog;
use crate::gate::{CapabilityRequest, ConnectRequest, Gate};
use crate::sandbox::grants::Credential;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// Per-task outbound HTTP state.
pub(crate) struct OutboundHttp {
    granted: bool,
    gate: Arc<dyn Gate>,
    decisions: DecisionLog,
    allow_private: bool,
    timeout: Duration,
    /// Added by the host to requests to their hosts, once allowed.
    credentials: Arc<[Credential]>,
}

impl OutboundHttp {
    /// Outbound HTTP not granted: every request is refused (and recorded).
    pub fn denied(gate: Arc<dyn Gate>, decisions: DecisionLog) -> Self {
        Self {
            granted: false,
            gate,
            decisions,
            allow_private: false,
            timeout: Duration::ZERO,
            credentials: Arc::from([]),
        }
    }

    pub fn granted(
        gate: Arc<dyn Gate>,
        decisions: DecisionLog,
        allow_private: bool,
        timeout: Duration,
        credentials: Vec<Credential>,
    ) -> Self {
        Self {
            granted: true,
            gate,
            decisions,
            allow_private,
            timeout,
            credentials: credentials.into(),
        }
    }
}

/// Where a request goes, taken from its URI.
#[derive(Clone)]
struct Target {
    scheme: Scheme,
    host: String,
    port: u16,
    method: String,
    path: String,
}

impl Target {
    fn of(request: &http::Request<WasiBody>) -> Result<Self, Error> {
        let uri = request.uri();
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let tls = scheme == Scheme::HTTPS;
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        // IPv6 literals arrive bracketed.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            scheme,
            host,
            port,
            method: request.method().to_string(),
            // As the server will read it (see `request_path`).
            path: super::request_path::for_policy(uri.path()),
        })
    }

    fn request(&self, addr: Option<IpAddr>) -> CapabilityRequest {
        CapabilityRequest::Connect(ConnectRequest {
            scheme: self.scheme.to_string(),
            host: self.host.clone(),
            port: self.port,
            method: self.method.clone(),
            path: self.path.clone(),
            addr,
        })
    }
}

/// Asks the gate, records the decision, and turns a denial into the error the guest sees.
/// A task out of budget is refused without asking (the executor then fails it).
fn check(
    gate: &dyn Gate,
    decisions: &DecisionLog,
    request: CapabilityRequest,
) -> Result<(), Error> {
    match decisions.ask(gate, request) {
        Ok(decision) if decision.allowed => Ok(()),
        _ => Err(Error::HttpRequestDenied),
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> SendFuture {
        let target = match Target::of(&request) {
            Ok(target) => target,
            Err(e) => return Box::new(async move { Err(e) }),
        };
        if !self.granted {
            let _ = self.decisions.refuse(
                target.request(None),
                "outbound HTTP was not granted to this task".into(),
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // First the name alone, so a denied host is never even looked up.
        if let Err(e) = check(&*self.gate, &self.decisions, target.request(None)) {
            return Box::new(async move { Err(e) });
        }
        let gate = self.gate.clone();
        let decisions = self.decisions.clone();
        let allow_private = self.allow_private;
        let credentials = self.credentials.clone();
        let mut request = request;
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .map_or(self.timeout, |t| t.min(self.timeout));
        Box::new(async move {
            let addr = resolve(&target, connect_timeout).await?;
            let class = classify(addr.ip());
            if !class.is_public() && !allow_private {
                let reason = format!(
                    "{} resolves to {}, {}; private and special-purpose addresses were not granted",
                    target.host,
                    addr.ip(),
                    class.describe()
                );
                let _ = decisions.refuse(target.request(Some(addr.ip())), reason);
                return Err(Error::DestinationIpProhibited);
            }
            check(&*gate, &decisions, target.request(Some(addr.ip())))?;
            let attached =
                attach_credentials(&mut request, &target, &credentials, &*gate, &decisions);
            if attached.is_empty() {
                return send(request, &target, addr, connect_timeout).await;
            }
            // An answer that echoes a credential must not hand it to the tool: it is asked for
            // unencoded, and each copy of the value is replaced in what comes back.
            request.headers_mut().insert(
                http::header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
            let (response, io) = send(request, &target, addr, connect_timeout).await?;
            Ok((super::credential_echo::redact(response, attached)?, io))
        })
    }
}

/// Adds the credentials bound to the request's host and port, each after the gate allowed
/// reading its secret for that host (a recorded decision). Done here, after the guest handed
/// the request over: the guest never holds the value. A denied one is left out; the request
/// goes without it. Returns the values added.
fn attach_credentials(
    request: &mut http::Request<WasiBody>,
    target: &Target,
    credentials: &[Credential],
    gate: &dyn Gate,
    decisions: &DecisionLog,
) -> Vec<crate::sandbox::Secret> {
    let mut attached = Vec::new();
    let tls = target.scheme == Scheme::HTTPS;
    for credential in credentials {
        let port = credential.port.unwrap_or(if tls { 443 } else { 80 });
        if credential.host != target.host || port != target.port || !(tls || credential.allow_http)
        {
            continue;
        }
        let read = CapabilityRequest::ReadSecret {
            name: credential.secret.clone(),
            host: Some(target.host.clone()),
        };
        if !matches!(decisions.ask(gate, read), Ok(d) if d.allowed) {
            continue;
        }
        let (Ok(name), Ok(mut value)) = (
            http::HeaderName::try_from(credential.header.as_str()),
            http::HeaderValue::try_from(credential.value.expose()),
        ) else {
            continue;
        };
        value.set_sensitive(true);
        request.headers_mut().remove(&name);
        request.headers_mut().insert(name, value);
        attached.push(credential.value.clone());
    }
    attached
}

/// The address to connect to: the literal, or the first one the name resolves to.
async fn resolve(target: &Target, timeout: Duration) -> Result<SocketAddr, Error> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let mut addrs = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|e| Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?;
    addrs.next().ok_or(Error::DestinationNotFound)
}

async fn send(
    mut request: http::Request<WasiBody>,
    target: &Target,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Stream> = if target.scheme == Scheme::HTTPS {
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(tls_config());
        let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // On the wire the request line carries only the path; the authority is in `Host`.
    // The path the policy decided on, its dot segments resolved, with the query as written.
    let uri = request.uri();
    let mut path = super::request_path::for_wire(uri.path());
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

    let mut connection = Box::pin(connection);
    let mut connection_done = false;
    let response = {
        let mut response = std::pin::pin!(sender.send_request(request));
        loop {
            tokio::select! {
                response = &mut response => break response?,
                result = &mut connection, if !connection_done => {
                    connection_done = true;
                    result?;
                }
            }
        }
    };
    let io: IoFuture = if connection_done {
        Box::new(async { Ok(()) })
    } else {
        Box::new(async move { connection.await.map_err(Error::from) })
    };
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        io,
    ))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Web PKI roots with the ring provider, built once per process.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

impl std::fmt::Debug for OutboundHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundHttp")
            .field("granted", &self.granted)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}
