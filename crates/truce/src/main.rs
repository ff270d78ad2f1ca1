//! `truce`: see `truce --help`.

#[global_allocator]
static ALLOCATOR: truce_serve::Allocator = truce_serve::Allocator;

fn main() -> anyhow::Result<()> {
    truce::cli::main()
}
