//! The lab as a container runtime: it attaches each host's container by calling the
//! `weft` CNI plugin exactly as Kubernetes or Podman would, CNI_* in the environment and
//! the network config on stdin, run in the host's namespace.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::agents;
use crate::error::{LabError, LabResult};
use crate::state::LabState;
use crate::topology;

/// Runs the plugin for host `i`'s container; returns its JSON answer (empty for DEL).
pub fn call(state: &LabState, i: u32, command: &str) -> LabResult<serde_json::Value> {
    let ctr = topology::container_ns(&state.name, i);
    call_as(state, i, &ctr, command, None, &serde_json::json!({}))
}

/// Runs the plugin on host `i` for the container whose network namespace is `ctr`
/// (also its container ID), with kubelet's `CNI_ARGS` if given and `extra` merged into
/// the network config.
pub fn call_as(
    state: &LabState,
    i: u32,
    ctr: &str,
    command: &str,
    cni_args: Option<&str>,
    extra: &serde_json::Value,
) -> LabResult<serde_json::Value> {
    let plugin = agents::sibling("weft", "WEFT_CNI_PLUGIN");
    let plugin_dir = plugin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut cmd = Command::new("ip");
    if let Some(args) = cni_args {
        cmd.env("CNI_ARGS", args);
    }
    let mut child = cmd
        .args(["netns", "exec", &topology::host_ns(&state.name, i)])
        .arg(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ctr)
        .env("CNI_NETNS", format!("/run/netns/{ctr}"))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_PATH",
            format!("{plugin_dir}:/usr/lib/cni:/opt/cni/bin"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            cmd: plugin.display().to_string(),
            source,
        })?;
    let mut conf = state.cni_config(i);
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let conf = conf.to_string();
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(conf.as_bytes())
        .map_err(|source| LabError::Io {
            path: "plugin stdin".into(),
            source,
        })?;
    let out = child.wait_with_output().map_err(|source| LabError::Spawn {
        cmd: plugin.display().to_string(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: serde_json::Value = if stdout.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(stdout.trim()).unwrap_or_default()
    };
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: format!("CNI {command} for {ctr}"),
            status: out.status.to_string(),
            stderr: format!("{answer} {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(answer)
}

/// The container's IPv6 address from a dual-stack ADD result.
pub fn address6(result: &serde_json::Value) -> Option<std::net::Ipv6Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
}

/// The container's address from an ADD result.
pub fn address(result: &serde_json::Value) -> Option<Ipv4Addr> {
    result["ips"][0]["address"]
        .as_str()?
        .split('/')
        .next()?
        .parse()
        .ok()
}
