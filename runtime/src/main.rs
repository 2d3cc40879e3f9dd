use std::process::ExitCode;

// Many small allocations from many threads (requests, events, JSON): glibc's
// allocator contends there; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    toolgate::cli::main()
}
