//! `vigil-operator`: skeleton until the operator issue; `crdgen` prints the CRDs.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    anyhow::bail!("vigil-operator: no subcommand implemented yet")
}
