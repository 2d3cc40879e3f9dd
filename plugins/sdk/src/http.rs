//! A small blocking client over `wasi:http/outgoing-handler`.
//!
//! Every request goes through the host, which checks it against policy: a
//! refusal comes back as the error code `HTTP-request-denied` or
//! `destination-IP-prohibited` and becomes `denied`, so the agent can tell
//! "not allowed" from "did not work".

use crate::ToolError;
use std::collections::BTreeMap;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, HeaderError, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::poll::{Pollable, poll};
use wasi::io::streams::StreamError;

/// What to send.
pub struct Request<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Option<&'a [u8]>,
    /// Stop reading the response body after this many bytes.
    pub max_bytes: usize,
    /// Overall deadline for the exchange, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// What came back. Header values with the same name are joined with ", ".
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub truncated: bool,
}

/// The parts of an absolute http(s) URL that `wasi:http` wants.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub authority: String,
    pub path_with_query: String,
}

/// Splits an `http://` or `https://` URL; the fragment is dropped.
pub fn parse_url(url: &str) -> Result<Url, ToolError> {
    let invalid = |why: &str| ToolError::InvalidInput(format!("invalid url {url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected http://host/..."))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(invalid("only http and https are supported")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(invalid("missing host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported, send a header",
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    let path_with_query = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Url {
        https,
        authority: authority.to_string(),
        path_with_query,
    })
}

/// Sends `req` and reads at most `max_bytes` of the response body.
pub fn send(req: &Request) -> Result<Response, ToolError> {
    let url = parse_url(req.url)?;
    let host = url.authority.as_str();
    let deadline = req
        .timeout_ms
        .map(|ms| monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)));
    let waiter = Waiter {
        deadline,
        timeout_ms: req.timeout_ms.unwrap_or(0),
    };

    let fields = headers(req.headers)?;
    if let Some(body) = req.body {
        // A known length avoids chunked uploads, which some servers refuse.
        let named = |h: &(String, String)| h.0.eq_ignore_ascii_case("content-length");
        if !req.headers.iter().any(named) {
            let _ = fields.append("content-length", body.len().to_string().as_bytes());
        }
    }
    let request = OutgoingRequest::new(fields);
    let failed = |what: &str| ToolError::Failed(format!("cannot build the request: {what}"));
    request
        .set_method(&method(req.method)?)
        .map_err(|()| failed("method"))?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| failed("scheme"))?;
    request
        .set_authority(Some(host))
        .map_err(|()| invalid_url(req.url))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid_url(req.url))?;
    let body = match req.body {
        Some(_) => Some(request.body().map_err(|()| failed("body"))?),
        None => None,
    };

    let options = req.timeout_ms.map(|ms| {
        let options = RequestOptions::new();
        // Best effort: a host may not support these; the deadline below still holds.
        let _ = options.set_connect_timeout(Some(ms.saturating_mul(1_000_000)));
        let _ = options.set_first_byte_timeout(Some(ms.saturating_mul(1_000_000)));
        options
    });
    let future = outgoing_handler::handle(request, options).map_err(|e| error_code(&e, host))?;

    // Write the body after `handle`, so a large one streams instead of
    // filling a buffer nobody reads yet. A write error is reported only if
    // the response does not explain it better.
    let write_result = match (body, req.body) {
        (Some(body), Some(bytes)) => write_body(body, bytes),
        _ => Ok(()),
    };

    waiter.wait(&future.subscribe())?;
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error_code(&code, host)),
        Some(Err(())) | None => return Err(ToolError::Failed("the response was lost".into())),
    };
    write_result.map_err(|e| ToolError::Failed(format!("sending the body to {host}: {e}")))?;

    let status = response.status();
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in response.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        header_map
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }

    let incoming = response
        .consume()
        .map_err(|()| ToolError::Failed("no response body".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| ToolError::Failed("no response body".into()))?;
    let mut data = Vec::new();
    // Read one byte past the limit to know whether anything was cut off.
    while data.len() <= req.max_bytes {
        let want = (req.max_bytes + 1 - data.len()).min(64 * 1024) as u64;
        match stream.read(want) {
            Ok(chunk) if chunk.is_empty() => waiter.wait(&stream.subscribe())?,
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(match wasi::http::types::http_error_code(&err) {
                    Some(code) => error_code(&code, host),
                    None => ToolError::Failed(format!(
                        "reading the body from {host}: {}",
                        err.to_debug_string()
                    )),
                });
            }
        }
    }
    let truncated = data.len() > req.max_bytes;
    data.truncate(req.max_bytes);
    Ok(Response {
        status,
        headers: header_map,
        body: data,
        truncated,
    })
}

fn invalid_url(url: &str) -> ToolError {
    ToolError::InvalidInput(format!("invalid url {url:?}"))
}

fn headers(list: &[(String, String)]) -> Result<Fields, ToolError> {
    let fields = Fields::new();
    for (name, value) in list {
        fields.append(name, value.as_bytes()).map_err(|e| match e {
            HeaderError::Forbidden => {
                ToolError::Denied(format!("the host does not allow setting header {name:?}"))
            }
            HeaderError::InvalidSyntax => {
                ToolError::InvalidInput(format!("invalid header {name:?}: {value:?}"))
            }
            HeaderError::Immutable => ToolError::Failed("headers are immutable".into()),
        })?;
    }
    Ok(fields)
}

fn method(name: &str) -> Result<Method, ToolError> {
    let upper = name.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ if !upper.is_empty()
            && upper
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!".contains(&b)) =>
        {
            Method::Other(upper)
        }
        _ => {
            return Err(ToolError::InvalidInput(format!(
                "invalid HTTP method {name:?}"
            )));
        }
    })
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "body stream unavailable".to_string())?;
    // blocking-write-and-flush takes at most 4096 bytes per call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("{e:?}"))?;
    }
    drop(stream); // the stream must go before the body is finished
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
}

/// Maps a `wasi:http` error code; `host` is the URL's authority.
pub fn error_code(code: &ErrorCode, host: &str) -> ToolError {
    let failed = |why: String| ToolError::Failed(why);
    match code {
        ErrorCode::HttpRequestDenied => {
            ToolError::Denied(format!("the host denied the HTTP request to {host}"))
        }
        ErrorCode::DestinationIpProhibited => ToolError::Denied(format!(
            "the host prohibits connecting to the address of {host}"
        )),
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            failed(format!("cannot resolve {host}: {code:?}"))
        }
        ErrorCode::ConnectionRefused => failed(format!("connection to {host} refused")),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => {
            failed(format!("request to {host} timed out ({code:?})"))
        }
        ErrorCode::TlsCertificateError => failed(format!("invalid TLS certificate for {host}")),
        ErrorCode::InternalError(Some(why)) => failed(format!("request to {host} failed: {why}")),
        _ => failed(format!("request to {host} failed: {code:?}")),
    }
}

/// Blocks on pollables, giving up at an optional deadline.
struct Waiter {
    deadline: Option<monotonic_clock::Instant>,
    timeout_ms: u64,
}

impl Waiter {
    fn wait(&self, ready: &Pollable) -> Result<(), ToolError> {
        let Some(deadline) = self.deadline else {
            ready.block();
            return Ok(());
        };
        let timer = monotonic_clock::subscribe_instant(deadline);
        if poll(&[ready, &timer]).contains(&0) {
            Ok(())
        } else {
            Err(ToolError::Failed(format!(
                "timed out after {} ms",
                self.timeout_ms
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let u = parse_url("https://example.com:8443/a/b?x=1#frag").unwrap();
        assert_eq!(
            u,
            Url {
                https: true,
                authority: "example.com:8443".into(),
                path_with_query: "/a/b?x=1".into()
            }
        );
        let u = parse_url("HTTP://127.0.0.1?q").unwrap();
        assert_eq!(
            (u.https, u.authority.as_str(), u.path_with_query.as_str()),
            (false, "127.0.0.1", "/?q")
        );
        assert_eq!(parse_url("http://h").unwrap().path_with_query, "/");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://h/",
            "example.com",
            "http:///x",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ToolError::InvalidInput(_))),
                "{bad}"
            );
        }
    }
}
