//! How `weftctl diagnose` prints its findings: a line each for people, one JSON object
//! per node for probes. Both give the exit code: 1 when any finding failed.

use std::net::Ipv4Addr;

use super::facts::{Finding, Level};

fn count(findings: &[Finding], level: Level) -> usize {
    findings.iter().filter(|f| f.level == level).count()
}

/// The printed report; the exit code is 1 when any finding failed.
pub fn render(header: &str, findings: &[Finding]) -> (String, i32) {
    let mut s = format!("{header}\n");
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    for f in findings {
        s += &format!(
            "  {:<4}  {:<width$}  {}\n",
            f.level.to_string(),
            f.what,
            f.detail
        );
    }
    let count = |l: Level| count(findings, l);
    let (fails, warns) = (count(Level::Fail), count(Level::Warn));
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    s += &format!(
        "{}, {}\n",
        plural(fails, "problem"),
        plural(warns, "warning")
    );
    (s, i32::from(fails > 0))
}

/// The same as one JSON object on one line (JSON lines when a lab prints several):
/// `{"node":..,"problems":N,"warnings":N,"findings":[{"level":"fail","check":..,"detail":..}]}`.
pub fn render_json(node: Option<Ipv4Addr>, findings: &[Finding]) -> (String, i32) {
    let count = |l: Level| count(findings, l);
    let fails = count(Level::Fail);
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "level": f.level.to_string().to_lowercase(),
                "check": f.what,
                "detail": f.detail,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "node": node.map(|ip| ip.to_string()),
        "problems": fails,
        "warnings": count(Level::Warn),
        "findings": list,
    });
    (format!("{doc}\n"), i32::from(fails > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::checks::findings;
    use crate::diagnose::checks::tests::healthy;

    #[test]
    fn json_for_probes() {
        let mut f = healthy();
        f.forwarding = Ok(false);
        let (text, code) = render_json(Some("192.168.77.1".parse().unwrap()), &findings(&f));
        assert_eq!(code, 1);
        assert_eq!(text.lines().count(), 1, "one line per node");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["node"], "192.168.77.1");
        assert_eq!(v["problems"], 1);
        assert_eq!(v["warnings"], 0);
        let fail = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["level"] == "fail")
            .unwrap();
        assert_eq!(fail["check"], "forwarding");
    }

    #[test]
    fn a_summary_line_and_the_exit_code() {
        let all = findings(&healthy());
        let (text, code) = render("weft diagnose: this node", &all);
        assert_eq!(code, 0);
        assert!(
            text.starts_with("weft diagnose: this node\n  ok    network "),
            "{text}"
        );
        let mut f = healthy();
        f.forwarding = Ok(false);
        f.firewall = Ok(false);
        let (text, code) = render("x", &findings(&f));
        assert_eq!(code, 1);
        assert!(text.ends_with("2 problems, 0 warnings\n"), "{text}");
    }
}
