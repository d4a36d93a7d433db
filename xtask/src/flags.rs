//! Command-line flags of every xtask command.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "BitNet project tasks")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Regenerate the tiny fixture models and their golden logits under fixtures/.
    Fixtures(FixturesArgs),
}

#[derive(Args, Debug)]
pub struct FixturesArgs {
    /// Only check that the committed files match what the generator produces.
    #[arg(long)]
    pub check: bool,
}
