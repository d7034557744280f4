//! Running the commands the lab is built with (`ip`, mostly), with errors that say which
//! command failed and what it printed.

use std::process::{Command, Output};

use crate::error::{LabError, LabResult};

fn describe(args: &[&str]) -> String {
    args.join(" ")
}

/// Runs a command to completion; fails with its stderr if it exits non-zero.
pub fn run(args: &[&str]) -> LabResult<String> {
    let out = output(args)?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and returns its output whatever its exit status.
pub fn output(args: &[&str]) -> LabResult<Output> {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: describe(args),
            source,
        })
}

/// Runs `ip -n NS ...`.
pub fn ip_in(ns: &str, args: &[&str]) -> LabResult<String> {
    let mut all = vec!["ip", "-n", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// Runs a command inside a namespace.
pub fn in_ns(ns: &str, args: &[&str]) -> LabResult<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// Every network namespace on the machine.
pub fn namespaces() -> LabResult<Vec<String>> {
    Ok(run(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}
