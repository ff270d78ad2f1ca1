//! `truce`: see `truce --help`.

fn main() -> anyhow::Result<()> {
    truce::cli::main()
}
