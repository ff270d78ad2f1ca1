//! `truce`: see `truce --help`.

#[global_allocator]
static ALLOCATOR: truce_serve::Allocator = truce_serve::Allocator;

fn main() -> std::process::ExitCode {
    truce::errors::exit_code(truce::cli::main)
}
