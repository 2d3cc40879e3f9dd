//! The WASI base every task gets: clocks and random numbers, nothing else. No
//! arguments, closed stdin, and `wasi:sockets` refused outright (outbound HTTP
//! goes through the checked hook instead, never through raw sockets).

use super::{StoreParts, TaskSpec};

pub(crate) fn apply(_spec: &TaskSpec<'_>, parts: &mut StoreParts) {
    parts
        .wasi
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
}
