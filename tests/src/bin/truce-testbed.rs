//! The `truce` command line under another name, for tests that need a
//! separate process (see Cargo.toml).

fn main() -> std::process::ExitCode {
    truce::errors::exit_code(truce::cli::main)
}
