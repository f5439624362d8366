//! `vigil observe`. Owned by the events work.
use clap::Args;

#[derive(Args, Debug)]
pub struct ObserveArgs {}

pub fn run(_args: ObserveArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented")
}
