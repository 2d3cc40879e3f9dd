//! What comes back from a request the host added a credential to: every copy of the value,
//! and of the secret inside it, is replaced by `[redacted]` in the headers and the body the
//! tool reads, so an API that echoes its request (a debug endpoint, an error page) cannot hand
//! the credential to the tool. An encoded body could hide it, so none is passed on.

use crate::sandbox::Secret;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi_http::{Error, WasiBody};

const REDACTED: &[u8] = b"[redacted]";

/// The response with the credentials' copies replaced.
pub(super) fn redact(
    response: http::Response<WasiBody>,
    attached: Vec<Secret>,
) -> Result<http::Response<WasiBody>, Error> {
    let (mut parts, body) = response.into_parts();
    if let Some(coding) = parts.headers.get(http::header::CONTENT_ENCODING)
        && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(Error::HttpResponseContentCoding(
            coding.to_str().ok().map(str::to_owned),
        ));
    }
    let needles = needles(&attached);
    for value in parts.headers.values_mut() {
        let bytes = value.as_bytes();
        if needles.iter().any(|n| find(bytes, n).is_some()) {
            let clean = replace_all(bytes, &needles);
            *value = http::HeaderValue::from_bytes(&clean)
                .unwrap_or_else(|_| http::HeaderValue::from_static("[redacted]"));
        }
    }
    // The length changes with each replacement: the body is sent chunked to the tool.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = Redacting {
        inner: body,
        keep: needles.iter().map(Vec::len).max().unwrap_or(1) - 1,
        needles,
        held: Vec::new(),
        ended: false,
    };
    Ok(http::Response::from_parts(parts, body.boxed_unsync()))
}

/// What to look for: each whole header value and the secret in it (a value of 4 bytes or
/// more; shorter ones would match everywhere), longest first.
fn needles(attached: &[Secret]) -> Vec<Vec<u8>> {
    let mut needles: Vec<Vec<u8>> = attached
        .iter()
        .flat_map(|value| {
            let whole = value.expose();
            let secret = whole.rsplit(' ').next().unwrap_or(whole);
            [whole.as_bytes().to_vec(), secret.as_bytes().to_vec()]
        })
        .filter(|n| n.len() >= 4)
        .collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    needles
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(bytes: &[u8], needles: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    'scan: while at < bytes.len() {
        for needle in needles {
            if bytes[at..].starts_with(needle) {
                out.extend_from_slice(REDACTED);
                at += needle.len();
                continue 'scan;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    out
}

/// A body passed on with every needle replaced, also across chunk boundaries: the last
/// `keep` bytes of what came wait for what follows.
struct Redacting {
    inner: WasiBody,
    needles: Vec<Vec<u8>>,
    keep: usize,
    held: Vec<u8>,
    ended: bool,
}

impl Body for Redacting {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            if self.ended {
                if self.held.is_empty() {
                    return Poll::Ready(None);
                }
                let rest = std::mem::take(&mut self.held);
                let rest = replace_all(&rest, &self.needles);
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                // Trailers are not passed on: they could carry the value too.
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let this = &mut *self;
                        this.held.extend_from_slice(&data);
                        let clean = replace_all(&this.held, &this.needles);
                        // What may still be the start of a needle waits for the next chunk.
                        let cut = clean.len().saturating_sub(this.keep);
                        this.held = clean[cut..].to_vec();
                        if cut > 0 {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
                                &clean[..cut],
                            )))));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: &[&str], value: &str) -> String {
        let needles = needles(&[Secret::new(value)]);
        let keep = needles.iter().map(Vec::len).max().unwrap() - 1;
        let chunks: Vec<Result<Frame<Bytes>, Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c.as_bytes()))))
            .collect();
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let body = Redacting {
            inner: inner.boxed_unsync(),
            needles,
            keep,
            held: Vec::new(),
            ended: false,
        };
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_copy_is_replaced_across_chunks() {
        let value = "Bearer tok-3f7d2c9b";
        assert_eq!(
            run(&["a Bearer tok-3f7d2c9b b"], value).await,
            "a [redacted] b"
        );
        assert_eq!(
            run(&["x tok-3f", "7d2c9b y"], value).await,
            "x [redacted] y"
        );
        assert_eq!(
            run(&["tok-3", "f7d", "2c9", "b", "tok-3f7d2c9b"], value).await,
            "[redacted][redacted]"
        );
        assert_eq!(run(&["nothing here"], value).await, "nothing here");
        assert_eq!(run(&["tok-3f7d2c9"], value).await, "tok-3f7d2c9");
    }
}
