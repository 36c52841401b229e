fn main() -> anyhow::Result<()> {
    anyhow::bail!("the authproxy is not built yet; see README \"Status\"")
}
