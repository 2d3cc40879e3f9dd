//! `http_hello`: the peer in the server throughput benchmark. A `wasi:http`
//! proxy component answering every request with `hello`, for
//! `wasmtime serve` (see `benches/README.md`). Not a toolgate plugin.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a fresh response has a body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("a fresh body has a stream");
        let _ = stream.blocking_write_and_flush(b"hello");
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasi::http::proxy::export!(Hello);
