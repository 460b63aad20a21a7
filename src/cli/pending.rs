//! Subcommands whose implementation has not landed yet: they accept any arguments and say
//! so clearly, naming the issue that tracks them, instead of failing on unknown flags.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct PendingArgs {
    /// Arguments (accepted and ignored until the command lands)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

pub fn run(name: &str, issue: u32, _args: PendingArgs) -> Result<()> {
    bail!("`facenet {name}` is not available in this build yet (tracked in issue #{issue}); see README.md")
}
