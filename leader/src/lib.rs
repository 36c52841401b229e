//! The leader: the only component that decides which node may update when.
//!
//! Built so far: the `crd` command that prints the project's CRDs.
//! The granting controller is the subject of the leader issue (see README "Status").

pub mod decide;
pub mod window;

/// Command-line interface of the `leader` binary.
pub mod cli {
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    #[command(
        name = "leader",
        version,
        about = "Grants Bottlerocket update slots to waiting nodes"
    )]
    pub struct Cli {
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(Subcommand, Debug)]
    pub enum Command {
        /// Print the CustomResourceDefinitions (the content of deploy/crds.yaml).
        Crd,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::cli::Cli::command().debug_assert();
    }
}
