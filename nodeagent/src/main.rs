fn main() -> anyhow::Result<()> {
    anyhow::bail!("the nodeagent is not built yet; see README \"Status\"")
}
