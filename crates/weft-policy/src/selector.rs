//! Kubernetes label selectors: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
//! DoesNotExist), all of which must hold. The empty selector selects everything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let have = labels.get(&r.key);
                match r.operator {
                    Operator::In => have.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => have.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }

    /// What is wrong with it, each problem prefixed with `at`.
    pub fn problems(&self, at: &str, out: &mut Vec<String>) {
        for (k, v) in &self.match_labels {
            check_key(&format!("{at}.matchLabels"), k, out);
            if !valid_value(v) {
                out.push(format!(
                    "{at}.matchLabels.{k}: {v:?} is not a label value (up to 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric)"
                ));
            }
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            let here = format!("{at}.matchExpressions[{i}]");
            check_key(&here, &r.key, out);
            match r.operator {
                Operator::In | Operator::NotIn if r.values.is_empty() => {
                    out.push(format!("{here}: {:?} needs at least one value", r.operator))
                }
                Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
                    out.push(format!("{here}: {:?} takes no values", r.operator))
                }
                _ => {}
            }
        }
    }

    /// As `kubectl` prints a selector (`app=web,tier in (a,b)`); `{}` selects all.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            "{} (all)".into()
        } else {
            parts.join(",")
        }
    }
}

fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn check_key(at: &str, key: &str, out: &mut Vec<String>) {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.is_empty() || !valid_value(name) || key.matches('/').count() > 1 {
        out.push(format!("{at}: {key:?} is not a label key"));
    }
}

/// Checks labels given to an endpoint or namespace (the same rules as selectors').
pub fn label_problems(labels: &Labels) -> Vec<String> {
    let mut out = Vec::new();
    LabelSelector {
        match_labels: labels.clone(),
        match_expressions: Vec::new(),
    }
    .problems("labels", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_and_the_empty_selector() {
        let sel: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"app":"web"},"matchExpressions":[
                {"key":"tier","operator":"In","values":["a","b"]},
                {"key":"env","operator":"NotIn","values":["prod"]},
                {"key":"team","operator":"Exists"},
                {"key":"legacy","operator":"DoesNotExist"}]}"#,
        )
        .unwrap();
        let ok = labels(&[("app", "web"), ("tier", "a"), ("team", "x")]);
        assert!(sel.matches(&ok));
        for (k, v) in [
            ("tier", "c"),
            ("env", "prod"),
            ("legacy", "y"),
            ("app", "db"),
        ] {
            let mut l = ok.clone();
            l.insert(k.into(), v.into());
            assert!(!sel.matches(&l), "{k}={v}");
        }
        let mut no_team = ok.clone();
        no_team.remove("team");
        assert!(!sel.matches(&no_team));
        assert!(LabelSelector::default().matches(&Labels::new()));
        assert_eq!(
            sel.describe(),
            "app=web,tier in (a,b),env notin (prod),team,!legacy"
        );
    }

    #[test]
    fn bad_selectors_are_named() {
        let sel: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"a b":"x","ok":"-bad"},"matchExpressions":[
                {"key":"k","operator":"In"},{"key":"k","operator":"Exists","values":["v"]}]}"#,
        )
        .unwrap();
        let mut p = Vec::new();
        sel.problems("spec.podSelector", &mut p);
        assert_eq!(
            p,
            [
                "spec.podSelector.matchLabels: \"a b\" is not a label key",
                "spec.podSelector.matchLabels.ok: \"-bad\" is not a label value (up to 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric)",
                "spec.podSelector.matchExpressions[0]: In needs at least one value",
                "spec.podSelector.matchExpressions[1]: Exists takes no values",
            ]
        );
    }
}
