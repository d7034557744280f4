//! Shell completions and man pages, generated from the command-line definitions so they
//! cannot drift from them (`weftctl completions SHELL`, `weftctl man DIR`; weftd writes
//! its own page with `weftd --write-man-page DIR`).

use std::path::{Path, PathBuf};

use clap::Command;

/// Writes `cmd`'s man page and one per subcommand (`weftctl-network-init.1`, ...) into
/// `dir`; returns the files written.
pub fn man_pages(cmd: Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_pages(cmd.clone(), cmd.get_name().to_owned(), dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: Command,
    name: String,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let cmd = cmd.name(name.clone());
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), sub_name, dir, written)?;
    }
    Ok(())
}

/// Prints the completion script for `shell` (a closed pipe, `| head`, is not an error).
pub fn completions(shell: clap_complete::Shell, mut cmd: Command) {
    use std::io::Write;
    let name = cmd.get_name().to_owned();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    let _ = std::io::stdout().write_all(&buf);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command a person runs (not the groups) shows an example in its help.
    fn leaves(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        let subs: Vec<_> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
        if subs.is_empty() || cmd.get_name() == "leases" {
            out.push((path.clone(), cmd.clone()));
        }
        for s in subs {
            leaves(s, format!("{path} {}", s.get_name()), out);
        }
    }

    #[test]
    fn every_command_has_an_example() {
        let mut all = Vec::new();
        let root = crate::Cli::command();
        for s in root.get_subcommands() {
            leaves(s, format!("weftctl {}", s.get_name()), &mut all);
        }
        assert!(all.len() > 25, "{}", all.len());
        for (path, mut cmd) in all {
            let help = cmd.render_long_help().to_string();
            assert!(
                help.contains("Example"),
                "{path} --help has no example:\n{help}"
            );
        }
    }

    #[test]
    fn man_pages_and_completions_come_from_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::man_pages(crate::Cli::command(), dir.path()).unwrap();
        assert!(files
            .iter()
            .any(|f| f.ends_with("weftctl-network-create.1")));
        let page = std::fs::read_to_string(dir.path().join("weftctl-network-init.1")).unwrap();
        assert!(
            page.contains("host\\-gw") || page.contains("host-gw"),
            "{page}"
        );
        let mut buf = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut crate::Cli::command(),
            "weftctl",
            &mut buf,
        );
        assert!(String::from_utf8(buf).unwrap().contains("network"));
    }
}
