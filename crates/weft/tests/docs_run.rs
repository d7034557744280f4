//! Docs that run. Every ```sh and ```console block in the README and `docs/` is either
//! run here or followed by `<!-- not run here: WHY -->`, and a command shown in any other
//! block (a `$ ` line in a ```text block) fails the check: it belongs in a ```console
//! block. A doc that says `<!-- run: lab up ARGS -->` after a block has that block and
//! every later one run in a lab made with ARGS: each line of a ```sh block on the host
//! its `# on host N` comment names (h1 otherwise, `docker` talking to that host's daemon;
//! a `--net NAME` waits until that host lists the network, as a person would); each
//! `# COMMAND` or `$ COMMAND` of a ```console block as written (`docker` on h1).
//!
//! A console command's whole output (its standard output, then its standard error) must
//! be what the doc shows under it, blank lines and runs of spaces aside, with two marks
//! for what differs from run to run (documented in docs/design.md, "Docs that run"):
//! `…` in a line stands for any text (an address, a time, a generated name), and a line
//! `...` for any number of lines. The command must exit 0, or the status its line ends
//! with as `# exit N`. The docs show the lab named `weft` (`weft-h1`, `weft-c1`,
//! `weft-p1`); the runner's lab has a name of its own, put in their place.
//!
//! The classification needs nothing; running needs root (and dockerd for docker.md).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use weft_testkit::require_root;

use common::*;

#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    kind: String,
    body: Vec<String>,
    /// The comment after it, if any: `not run here: ...` or `run: ...`.
    note: Option<String>,
}

fn docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for dir in [root.join("docs"), root.join("docs/backends")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(kind) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && lines[i] != "```" {
            body.push(lines[i].to_owned());
            i += 1;
        }
        let note = lines[i + 1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!--"))
            .map(|l| l.trim().to_owned());
        if kind == "sh" || kind == "console" || body.iter().any(|l| l.starts_with("$ ")) {
            out.push(Block {
                file: file.to_owned(),
                line: start + 1,
                kind: kind.to_owned(),
                body,
                note,
            });
        }
        i += 1;
    }
    out
}

/// A block that starts weftd and then asks `diagnose` for `/healthz` on a port starts
/// weftd serving it there: a reader who copies the block does not meet a FAIL the
/// docs did not predict (weftd serves no `/healthz` unless told a port).
#[test]
fn diagnose_asks_healthz_where_the_block_serves_it() {
    let mut checked = 0;
    for file in docs() {
        for b in blocks(&file) {
            let port = b.body.iter().find_map(|l| {
                let rest = l.split("diagnose ").nth(1)?;
                let rest = rest.split("--healthz-port ").nth(1)?;
                rest.split_whitespace().next().map(str::to_owned)
            });
            let weftd: Vec<&String> = b
                .body
                .iter()
                .filter(|l| l.trim_start().starts_with("weftd "))
                .collect();
            let (Some(port), false) = (port, weftd.is_empty()) else {
                continue;
            };
            checked += 1;
            for l in weftd {
                assert!(
                    l.contains(&format!("--healthz-port {port}"))
                        || l.contains(&format!("--healthz-port={port}")),
                    "{}:{}: weftd is started without --healthz-port {port}, then diagnose asks for it: {l}",
                    b.file.display(),
                    b.line
                );
            }
        }
    }
    assert!(checked > 0, "the README's Use it block is among them");
}

/// docs/lab.md's synopsis of `lab up` names every option `lab up` takes.
#[test]
fn the_lab_synopsis_names_every_option() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/lab.md")).unwrap();
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `lab up "))
        .expect("a lab up row in docs/lab.md");
    let help = Command::new(WEFTCTL)
        .args(["lab", "up", "-h"])
        .output()
        .unwrap();
    let options: Vec<String> = text(&help.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| format!("--{}", l.split([' ', '=']).next().unwrap()))
        .collect();
    assert!(options.len() > 15, "{options:?}");
    let missing: Vec<&String> = options
        .iter()
        .filter(|o| !row.contains(o.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/lab.md's lab up row lacks {missing:?}"
    );
}

#[test]
fn every_shell_block_is_run_or_says_why() {
    let mut unclassified = Vec::new();
    let mut misfiled = Vec::new();
    let mut total = 0;
    for f in docs() {
        let mut running = false;
        for b in blocks(&f) {
            total += 1;
            if b.kind != "sh" && b.kind != "console" {
                misfiled.push(format!("{}:{}", b.file.display(), b.line));
            }
            match b.note.as_deref() {
                Some(n) if n.starts_with("run: lab up") => running = true,
                Some(n)
                    if n.starts_with("not run here:") && n.len() > "not run here: ".len() + 5 => {}
                _ if running => {}
                _ => unclassified.push(format!("{}:{}", b.file.display(), b.line)),
            }
        }
    }
    assert!(total >= 10, "found only {total} blocks");
    assert!(
        misfiled.is_empty(),
        "commands (`$ ` lines) outside a ```console block, where the runner would not see them:\n{}",
        misfiled.join("\n")
    );
    assert!(
        unclassified.is_empty(),
        "shell blocks neither run nor marked <!-- not run here: why -->:\n{}",
        unclassified.join("\n")
    );
}

/// Where a lab's doc blocks run: the files they show (`$ cat FILE`) are written here.
fn workdir(lab: &Lab) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-docs", lab.name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `line` (a shell command as a person types it) from outside the lab, with the
/// lab's name in place of the docs' `weft`; a store command without `--lab` (as a
/// person on a node types it) goes to the lab's store.
fn sh(lab: &Lab, line: &str) -> std::process::Output {
    let line = named(lab, line);
    // Each command of a pipeline: `... | weftctl policy apply -f -` too.
    let line = line
        .split(" | ")
        .map(|part| match part.strip_prefix("weftctl ") {
            Some(rest) if !rest.starts_with("lab ") && !rest.contains("--lab ") => {
                format!("weftctl --lab {} {rest}", lab.name)
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let bin = Path::new(WEFTCTL).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .args(["-c", &line])
        .current_dir(workdir(lab))
        .env("PATH", path)
        .env("WEFT_LAB", &lab.name)
        .env("WEFT_WEFTD", WEFTD)
        .output()
        .unwrap()
}

/// `text` with the docs' lab name (`weft`: `--lab weft`, `weft-h1`, `weft-c1`,
/// `weft-p1`, the lab's directory `/run/weft-lab/weft/`) replaced by `lab`'s.
fn named(lab: &Lab, text: &str) -> String {
    let mut out = text
        .replace("--lab weft ", &format!("--lab {} ", lab.name))
        .replace(
            "/run/weft-lab/weft/",
            &format!("/run/weft-lab/{}/", lab.name),
        );
    for part in ["h", "c", "p"] {
        for n in 1..10 {
            out = out.replace(
                &format!("weft-{part}{n}"),
                &format!("{}-{part}{n}", lab.name),
            );
        }
    }
    out
}

/// Whether the output lines `got` show what the doc's lines `documented` do: blank lines
/// and runs of spaces aside, `…` in a documented line standing for any text and a
/// documented line `...` for any number of lines.
fn shows(documented: &[String], got: &[String]) -> bool {
    let doc: Vec<String> = documented
        .iter()
        .map(|l| squash(l))
        .filter(|l| !l.is_empty())
        .collect();
    let got: Vec<String> = got
        .iter()
        .map(|l| squash(l))
        .filter(|l| !l.is_empty())
        .collect();
    lines_match(&doc, &got)
}

fn lines_match(doc: &[String], got: &[String]) -> bool {
    match doc.split_first() {
        None => got.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=got.len()).any(|skip| lines_match(rest, &got[skip..]))
        }
        Some((first, rest)) => got
            .split_first()
            .is_some_and(|(g, grest)| line_matches(first, g) && lines_match(rest, grest)),
    }
}

/// One line: `…` stands for any text (spaces around it are the line's own).
fn line_matches(doc: &str, got: &str) -> bool {
    let parts: Vec<&str> = doc.split('…').collect();
    if parts.len() == 1 {
        return doc == got;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let Some(mut rest) = got.strip_prefix(first) else {
        return false;
    };
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn the_marks_match_what_they_say() {
    let v = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let doc = v(&[
        "64 bytes from 10.50.0.20: seq=0 ttl=64 time=… ms",
        "...",
        "done",
    ]);
    assert!(shows(
        &doc,
        &v(&[
            "64 bytes from 10.50.0.20: seq=0 ttl=64 time=0.465  ms",
            "",
            "a",
            "b",
            "done"
        ])
    ));
    assert!(shows(
        &doc,
        &v(&["64 bytes from 10.50.0.20: seq=0 ttl=64 time=1 ms", "done"])
    ));
    assert!(!shows(
        &doc,
        &v(&["64 bytes from 10.50.0.21: seq=0 ttl=64 time=1 ms", "done"])
    ));
    assert!(!shows(
        &doc,
        &v(&["64 bytes from 10.50.0.20: seq=0 ttl=64 time=1 ms"])
    ));
    assert!(
        !shows(&v(&["a"]), &v(&["a", "b"])),
        "a line more is a difference"
    );
    assert!(line_matches(
        "… blue weft local",
        "397d8570e209 blue weft local"
    ));
    assert!(line_matches(
        "10.244.….0/24 via …",
        "10.244.86.0/24 via 192.168.77.2"
    ));
    assert!(!line_matches(
        "10.244.….0/24 via …",
        "10.245.86.0/24 via 192.168.77.2"
    ));
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Words that make a console command one that changes something (run once, never again
/// to wait for its output).
const ACTIONS: &[&str] = &[
    "create",
    "run",
    "apply",
    "delete",
    "add",
    "release",
    "label",
    "rm",
    "remove",
    "connect",
    "disconnect",
    "up",
    "down",
    "init",
    "kill",
    "restart",
    "start",
    "stop",
];

/// The command on a console line after its prompt (`# ` or `$ `), if it has one.
fn prompt(l: &str) -> Option<&str> {
    l.strip_prefix("# ").or_else(|| l.strip_prefix("$ "))
}

fn run_block(lab: &Lab, b: &Block) {
    let at = format!("{}:{}", b.file.display(), b.line);
    let mut ran = 0;
    if b.kind == "sh" {
        for line in b
            .body
            .iter()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (cmd, host) = match line.split_once("# on host ") {
                Some((c, h)) => (c.trim(), format!("h{}", h.trim())),
                None => (line.trim(), "h1".to_owned()),
            };
            // A network made on one host reaches the others within a second or two
            // (docs/docker.md says so): wait for it as a person would.
            if let Some(net) = cmd
                .split("--net ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
            {
                lab.wait_until(
                    &format!("{host} to list {net}"),
                    std::time::Duration::from_secs(10),
                    || {
                        text(&sh(lab, &format!("weftctl lab exec {host} docker network ls")).stdout)
                            .contains(net)
                    },
                );
            }
            let out = if cmd.starts_with("docker ") {
                sh(lab, &format!("weftctl lab exec {host} {cmd}"))
            } else {
                sh(lab, cmd)
            };
            assert!(
                out.status.success(),
                "{at}: `{cmd}` failed:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            ran += 1;
        }
        assert!(ran > 0, "{at}: a block that runs ran no command");
        return;
    }
    // console: `# COMMAND` or `$ COMMAND` then its output, until the next prompt.
    let mut i = 0;
    while i < b.body.len() {
        let Some(cmd) = prompt(&b.body[i]) else {
            i += 1;
            continue;
        };
        let all_after: Vec<&String> = b.body[i + 1..]
            .iter()
            .take_while(|l| prompt(l).is_none())
            .collect();
        ran += 1;
        // `cat FILE` shows a file the reader writes: it is written as shown.
        if let Some(file) = cmd.strip_prefix("cat ").filter(|f| !f.contains('/')) {
            let body: String = all_after.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(workdir(lab).join(file.trim()), body).unwrap();
            i += 1;
            continue;
        }
        let documented: Vec<String> = all_after.iter().map(|l| named(lab, l)).collect();
        // `COMMAND   # exit N`: the status the doc says it ends with.
        let (cmd, status) = match cmd.rsplit_once("# exit ") {
            Some((c, n)) if n.trim().parse::<i32>().is_ok() => {
                (c.trim(), n.trim().parse::<i32>().unwrap())
            }
            _ => (cmd, 0),
        };
        // Docker commands run on the lab's host 1, as the sh blocks' do.
        let line = match cmd.strip_prefix("docker ") {
            Some(_) => format!("weftctl lab exec h1 {cmd}"),
            None => cmd.to_owned(),
        };
        let cmd = line.as_str();
        let output = |out: &std::process::Output| -> Vec<String> {
            text(&out.stdout)
                .lines()
                .chain(text(&out.stderr).lines())
                .map(str::to_owned)
                .collect()
        };
        let mut out = sh(lab, cmd);
        // What follows the store or the kernel may take a moment to show: a command that
        // reads is run again until it shows it (one that changes something runs once).
        let changes = cmd.split_whitespace().any(|w| ACTIONS.contains(&w));
        for _ in 0..if changes { 0 } else { 50 } {
            if out.status.code() == Some(status) && shows(&documented, &output(&out)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            out = sh(lab, cmd);
        }
        assert_eq!(
            out.status.code(),
            Some(status),
            "{at}: `{cmd}` should exit {status}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            shows(&documented, &output(&out)),
            "{at}: `{cmd}` printed\n{}\nwhere the doc shows\n{}",
            output(&out).join("\n"),
            documented.join("\n")
        );
        i += 1;
    }
    assert!(ran > 0, "{at}: a block that runs ran no command");
}

#[test]
fn runnable_docs_run_in_the_lab() {
    require_root!("runnable_docs_run_in_the_lab");
    // WEFT_DOC=bgp.md runs one doc's blocks (while writing it); the suite runs them all.
    let only = std::env::var("WEFT_DOC").ok();
    for f in docs() {
        if only.as_ref().is_some_and(|o| !f.ends_with(o)) {
            continue;
        }
        let mut lab: Option<Lab> = None;
        let all = blocks(&f);
        let Some(first) = all.iter().position(|b| {
            b.note
                .as_deref()
                .is_some_and(|n| n.starts_with("run: lab up"))
        }) else {
            continue;
        };
        let note = all[first].note.clone().unwrap();
        let args: Vec<String> = note
            .trim_start_matches("run: lab up")
            .trim_end_matches("-->")
            .split_whitespace()
            .map(String::from)
            .collect();
        if args.iter().any(|a| a == "--docker")
            && !Command::new("which")
                .arg("dockerd")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            // This test runs as root only, where nothing may be skipped.
            panic!(
                "the blocks of {} need dockerd: install Debian's docker.io (scripts/setup does)",
                f.display()
            );
        }
        let hosts = args
            .iter()
            .position(|a| a == "--hosts")
            .and_then(|i| args.get(i + 1))
            .and_then(|h| h.parse().ok())
            .unwrap_or(3);
        let extra: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "--hosts" && a.parse::<u32>().is_err())
            .collect();
        let l = lab.insert(Lab::up_with("doc", "embedded", hosts, &extra));
        for b in &all[first..] {
            if b.note
                .as_deref()
                .is_some_and(|n| n.starts_with("not run here:"))
            {
                continue;
            }
            run_block(l, b);
        }
        drop(lab);
    }
}

/// The last string literal of the macro call `call` starts (`warn!(...`): its message.
fn last_literal(call: &str) -> Option<String> {
    let (mut depth, mut last, mut chars) = (0, None, call.char_indices());
    while let Some((_, c)) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return last;
                }
            }
            '"' => {
                let mut lit = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        c => lit.push(c),
                    }
                }
                last = Some(lit);
            }
            _ => {}
        }
    }
    None
}

/// Every WARN and ERROR message weftd (with its Docker driver, BGP speaker and the store
/// client it runs) can log is in docs/troubleshooting.md: each message's longest fixed
/// part, the `{...}` fields left out, appears there.
#[test]
fn every_agent_message_is_explained() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/troubleshooting.md")).unwrap();
    let mut sources = Vec::new();
    for dir in [
        "crates/weft-agent/src",
        "crates/weft-bgp/src",
        "crates/weft-docker/src",
        "crates/weft-store/src",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
                    sources.push(p);
                }
            }
        }
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    for f in sources {
        let text = std::fs::read_to_string(&f).unwrap();
        for (at, _) in text
            .match_indices("warn!(")
            .chain(text.match_indices("error!("))
        {
            let call = &text[at..];
            let Some(message) = last_literal(call) else {
                continue;
            };
            let fixed = message
                .split(['{', '}'])
                .step_by(2)
                .map(str::trim)
                .max_by_key(|p| p.len())
                .unwrap_or_default();
            if fixed.len() < 8 {
                continue; // all fields (`{why}`): the message is its value
            }
            seen += 1;
            if !doc.contains(fixed) {
                missing.push(format!("{}: {message}", f.display()));
            }
        }
    }
    assert!(seen > 40, "found only {seen} messages");
    assert!(
        missing.is_empty(),
        "not in docs/troubleshooting.md:\n{}",
        missing.join("\n")
    );
}
