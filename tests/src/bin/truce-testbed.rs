//! The `truce` command line under another name, for tests that need a
//! separate process (see Cargo.toml).

fn main() -> anyhow::Result<()> {
    truce::cli::main()
}
