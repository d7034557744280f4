//! `weftctl node status`: the BGP peers of a node running the bgp backend, in the table
//! Calico users know (`PEER ADDRESS | PEER TYPE | STATE | SINCE | INFO`), plus the routes
//! received from and advertised to each peer, whether its session is signed (MD5), its
//! graceful-restart state (GR) and why its last session ended (LAST ERROR).
//! Reads the file the agent keeps (`--bgp-status-file`), or every lab host's with
//! `--lab`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// The node's BGP sessions.
    #[command(
        after_help = "Example:\n  weftctl node status   (on a node running the bgp backend)"
    )]
    Status {
        /// The agent's status file (its `--bgp-status-file`).
        #[arg(long, default_value = "/run/weft/bgp-status.json")]
        file: PathBuf,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: crate::output::Output,
    },
}

fn clock(unix: u64) -> String {
    let s = unix % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Renders one node's status file as the table.
pub fn render(json: &str) -> Result<String, crate::CliError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(crate::CliError::Status)?;
    let mut rows = vec![[
        "PEER ADDRESS".to_string(),
        "PEER TYPE".into(),
        "STATE".into(),
        "SINCE".into(),
        "INFO".into(),
        "ROUTES RECEIVED".into(),
        "ROUTES ADVERTISED".into(),
        "MD5".into(),
        "GR".into(),
        "LAST ERROR".into(),
    ]];
    for p in v["peers"].as_array().into_iter().flatten() {
        let state = p["state"].as_str().unwrap_or("?");
        let info = p["info"]
            .as_str()
            .filter(|i| !i.is_empty())
            .unwrap_or(state);
        rows.push([
            p["address"].as_str().unwrap_or("?").into(),
            p["type"].as_str().unwrap_or("?").into(),
            if state == "Established" {
                "up"
            } else {
                "start"
            }
            .into(),
            clock(p["since"].as_u64().unwrap_or(0)),
            if state == "Established" || info == state {
                info.to_string()
            } else {
                format!("{state} {info}").trim().to_string()
            },
            p["received"].to_string(),
            p["advertised"].to_string(),
            // Whether the session is signed (TCP MD5); never the password.
            if p["md5"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            }
            .into(),
            // Graceful restart (RFC 4724): on, off, peer restarting; "-" before a session.
            p["graceful_restart"].as_str().unwrap_or("-").into(),
            p["last_error"]
                .as_str()
                .filter(|e| !e.is_empty())
                .unwrap_or("-")
                .into(),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let line = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = format!(
        "BGP speaker: AS {}, router id {}\n\nIPv4 BGP status\n",
        v["asn"],
        v["router_id"].as_str().unwrap_or("?")
    );
    for (i, r) in rows.iter().enumerate() {
        if i <= 1 {
            out.push_str(&line);
        }
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        out.push_str(&format!("|{}|\n", cells.join("|")));
    }
    out.push_str(&line);
    Ok(out)
}

pub fn run(cmd: NodeCmd, lab: Option<&str>) -> Result<i32, crate::CliError> {
    let NodeCmd::Status { file, output } = cmd;
    let files: Vec<(String, PathBuf)> = match lab {
        Some(name) => crate::lab_host_paths(name, |s, i| s.bgp_status_file(i))?,
        None => vec![(String::new(), file)],
    };
    let mut all = Vec::new();
    for (host, f) in files {
        let text = std::fs::read_to_string(&f).map_err(crate::CliError::io(format!(
            "cannot read {} (is weftd running with the bgp backend?)",
            f.display()
        )))?;
        if output == crate::output::Output::Json {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(crate::CliError::Status)?;
            all.push(serde_json::json!({"host": host, "status": v}));
            continue;
        }
        if !host.is_empty() {
            println!("== {host}");
        }
        print!("{}", render(&text)?);
    }
    if output == crate::output::Output::Json {
        crate::output::print_json(&serde_json::Value::Array(all));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn calico_style_table() {
        let t = super::render(
            r#"{"asn":64512,"router_id":"192.168.77.1","peers":[{"address":"192.168.77.2","type":"node-to-node mesh","state":"Established","since":3600,"info":"Established","received":1,"advertised":1},{"address":"192.168.77.254","type":"global","state":"Active","since":0,"info":"connect: refused","received":0,"advertised":0,"md5":true,"graceful_restart":"on","last_error":"peer sent NOTIFICATION: cease: administrative reset"}]}"#,
        )
        .unwrap();
        assert!(
            t.contains("| PEER ADDRESS   | PEER TYPE         | STATE | SINCE    | INFO"),
            "{t}"
        );
        assert!(
            t.contains("| 192.168.77.2   | node-to-node mesh | up    | 01:00:00 | Established"),
            "{t}"
        );
        assert!(
            t.contains("| start | 00:00:00 | Active connect: refused"),
            "{t}"
        );
        assert!(
            t.contains("| MD5 |") && t.contains("| on  |") && t.contains("| off |"),
            "{t}"
        );
        assert!(
            t.contains("| on  | on | peer sent NOTIFICATION: cease: administrative reset |"),
            "{t}"
        );
        assert!(
            t.contains("| off | -  | -"),
            "before a session: not known\n{t}"
        );
    }
}
