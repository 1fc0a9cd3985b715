//! The `tessera` command: see `tessera --help`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tessera::cli::main()
}
