//! `appliance generate man|completions DIR` (hidden): the man page and shell
//! completions, rendered from the real command definition so they cannot
//! drift from `--help`. Packaging (`packaging/build-deb.sh`) runs it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write the man pages (`appliance.1`, `appliance-serve.1`, ...) into DIR.
    Man { dir: PathBuf },
    /// Write bash (`appliance.bash`), zsh (`_appliance`) and fish
    /// (`appliance.fish`) completions into DIR.
    Completions { dir: PathBuf },
}

pub fn run(cmd: GenerateCommand) -> anyhow::Result<()> {
    let written = match cmd {
        GenerateCommand::Man { dir } => man(&dir)?,
        GenerateCommand::Completions { dir } => completions(&dir)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// `DIR/appliance.1` and a page per subcommand (`appliance-serve.1`,
/// `appliance-user-create.1`, ...), as git does; hidden commands get none.
pub fn man(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

/// Completion scripts for bash, zsh and fish in `dir`.
pub fn completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "appliance", dir)
            .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        written.push(path);
    }
    Ok(written)
}
