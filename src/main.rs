//! The `tessera` command: see `tessera --help`.

#![forbid(unsafe_code)]

/// mimalloc rather than glibc's allocator: request handling allocates many small, short-lived
/// objects across worker threads, where glibc's arenas cost a measurable share of CPU.
/// (`system-allocator` keeps glibc's, for heap profilers that hook it.)
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera::cli::main()
}
