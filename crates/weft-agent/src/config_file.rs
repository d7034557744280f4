//! weftd's config file (`--config FILE`, `/etc/weft/weftd.conf` in the package): one
//! option per line as `name = value`, named as on the command line without the dashes.
//!
//! ```text
//! # /etc/weft/weftd.conf
//! store = "etcd"
//! etcd-endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
//! ip-masq = true
//! healthz-port = 9462
//! ```
//!
//! Values are a quoted string, a bare word or number, `true` (the flag is given) or
//! `false` (it is not), or a list in brackets (the option repeated). The file becomes
//! arguments placed before the command line's, so an option given on both wins from the
//! command line. Every line is checked against weftd's options: an unknown name or an
//! unreadable value is refused with its line number.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{path}, line {line}: {why}")]
pub struct ConfigFileError {
    pub path: String,
    pub line: usize,
    pub why: BadLine,
}

/// What is wrong with one line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BadLine {
    #[error("expected `name = value`, found {0:?}")]
    NotAnOption(String),
    #[error("unknown option {0:?} (see weftd --help)")]
    UnknownOption(String),
    #[error("a list must end with ']': {0}")]
    UnclosedList(String),
    #[error("unterminated string: {0}")]
    Unterminated(String),
    #[error("a value with spaces must be quoted: {0:?}")]
    Unquoted(String),
    #[error("{name} is a switch: write `{name} = true` or `{name} = false`, not {value:?}")]
    NotASwitchValue { name: String, value: String },
}

/// An option weftd takes, as the file may name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The long name, without the dashes.
    pub name: String,
    /// A switch (`--ip-masq`): `true` gives it, `false` leaves it out, nothing else.
    pub switch: bool,
}

/// The long options of `cmd` (but `--config`), as [`to_args`] checks a file against.
pub fn known_options(cmd: &clap::Command) -> Vec<Known> {
    cmd.get_arguments()
        .filter_map(|a| {
            let name = a.get_long()?.to_owned();
            (name != "config").then(|| Known {
                name,
                switch: !a.get_action().takes_values(),
            })
        })
        .collect()
}

/// The arguments `text` stands for, checked against `known` long option names (pure).
pub fn to_args(path: &Path, text: &str, known: &[Known]) -> Result<Vec<String>, ConfigFileError> {
    let mut args = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let err = |why: BadLine| ConfigFileError {
            path: path.display().to_string(),
            line: n + 1,
            why,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| err(BadLine::NotAnOption(line.to_owned())))?;
        let name = name.trim().trim_start_matches("--");
        let Some(option) = known.iter().find(|k| k.name == name) else {
            return Err(err(BadLine::UnknownOption(name.to_owned())));
        };
        for v in values(value.trim()).map_err(err)? {
            match (option.switch, v.as_str()) {
                (true, "true") => args.push(format!("--{name}")),
                (true, "false") => {}
                (true, _) => {
                    return Err(err(BadLine::NotASwitchValue {
                        name: name.to_owned(),
                        value: v,
                    }))
                }
                (false, _) => args.push(format!("--{name}={v}")),
            }
        }
    }
    Ok(args)
}

/// A line without its `#` comment (a `#` inside quotes stays).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn values(v: &str) -> Result<Vec<String>, BadLine> {
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| BadLine::UnclosedList(v.to_owned()))?;
        return inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(scalar)
            .collect();
    }
    Ok(vec![scalar(v)?])
}

fn scalar(v: &str) -> Result<String, BadLine> {
    if let Some(inner) = v.strip_prefix('"') {
        return inner
            .strip_suffix('"')
            .map(str::to_owned)
            .ok_or_else(|| BadLine::Unterminated(v.to_owned()));
    }
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err(BadLine::Unquoted(v.to_owned()));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<Known> {
        [
            ("store", false),
            ("etcd-endpoints", false),
            ("ip-masq", true),
            ("healthz-port", false),
            ("big-tcp", true),
            ("docker", true),
        ]
        .map(|(name, switch)| Known {
            name: name.into(),
            switch,
        })
        .to_vec()
    }

    #[test]
    fn lines_become_arguments() {
        let text = "# weftd\nstore = \"etcd\"\netcd-endpoints = [\"http://a:2379\", \"http://b:2379\"]  # two\nip-masq = true\nbig-tcp = false\nhealthz-port = 9462\n";
        let args = to_args(Path::new("w.conf"), text, &known()).unwrap();
        assert_eq!(
            args,
            [
                "--store=etcd",
                "--etcd-endpoints=http://a:2379",
                "--etcd-endpoints=http://b:2379",
                "--ip-masq",
                "--healthz-port=9462"
            ]
        );
    }

    #[test]
    fn the_packaged_config_is_valid() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Weftd {
            #[command(flatten)]
            agent: crate::AgentOptions,
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/weftd.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        let known = known_options(&Weftd::command());
        let mut args = vec!["weftd".to_owned()];
        args.extend(to_args(&path, &text, &known).unwrap());
        let parsed = Weftd::try_parse_from(&args).unwrap_or_else(|e| panic!("{e}"));
        assert!(parsed.agent.ip_masq && parsed.agent.healthz_port == 9462);
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = to_args(
            Path::new("w.conf"),
            "store = etcd\nip-mask = true\n",
            &known(),
        )
        .unwrap_err();
        assert_eq!(
            (
                e.line,
                e.why.to_string().contains("unknown option \"ip-mask\"")
            ),
            (2, true),
            "{e}"
        );
        let e = to_args(Path::new("w.conf"), "store etcd\n", &known()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("w.conf, line 1: expected `name = value`"),
            "{e}"
        );
        let e = to_args(Path::new("w.conf"), "store = \"etcd\n", &known()).unwrap_err();
        assert!(e.why.to_string().contains("unterminated"), "{e}");
        // A switch given a value other than true or false names its file and line.
        let e = to_args(
            Path::new("w.conf"),
            "store = etcd\ndocker = yes\n",
            &known(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "w.conf, line 2: docker is a switch: write `docker = true` or `docker = false`, not \"yes\""
        );
    }
}
