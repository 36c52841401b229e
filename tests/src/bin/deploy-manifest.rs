//! Prints the install manifest (see `tests::deploy`).

fn main() -> std::io::Result<()> {
    print!("{}", tests::deploy::assemble(&tests::deploy::deploy_dir())?);
    Ok(())
}
