//! `vigil policy …`. Owned by the policy work.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {}
}
