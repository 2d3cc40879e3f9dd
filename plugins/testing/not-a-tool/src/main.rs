//! A plain WASI command (world `wasi:cli/command`), not a `toolgate:plugin/tool`
//! component. The host must reject it when loading plugins.

fn main() {
    println!("hello");
}
