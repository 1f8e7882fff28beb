//! A minimal binary for this crate's integration tests: `<exe> shim <request>` runs the shim,
//! exactly as the `cloudlet` binary dispatches it.

fn main() {
    std::process::exit(runtime::shim::main(std::env::args_os().collect()));
}
