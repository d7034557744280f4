//! `weftctl lab probe`: the lab's reachability matrix with `policy explain`'s verdict
//! beside each cell, read from the lab's store; exit 1 where traffic and explain
//! disagree (so a policy test reads as a truth table and a mismatch fails it).

use std::time::Duration;

use weft_alloc::Registry;
use weft_lab::pods::{self, Cell};
use weft_lab::LabState;
use weft_policy::{explain, Flow, Protocol};

use crate::error::CliError;

/// Fills in each cell's explanation from the store's policies and identities.
pub async fn explain_cells(
    registry: &Registry,
    state: &LabState,
    cells: &mut [Cell],
    ipv6: bool,
) -> Result<(), CliError> {
    let st = registry.policy_state().await?;
    let world = crate::policy::world(registry, &st).await?;
    for c in cells.iter_mut() {
        let (Some(from), Some(to)) = (state.pods.get(&c.from), state.pods.get(&c.to)) else {
            continue;
        };
        let Some((proto, port)) = c.port.split_once(':') else {
            continue;
        };
        let addr = |p: &weft_lab::pods::Pod| match (ipv6, p.ip6) {
            (true, Some(a)) => a.into(),
            _ => p.ip.into(),
        };
        let flow = Flow {
            src: addr(from),
            dst: addr(to),
            protocol: if proto == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
            port: port.parse().unwrap_or_default(),
        };
        c.explained = Some(explain(&world, &st.policies, &flow).allowed);
    }
    Ok(())
}

/// How long a probe waits for the hosts to enforce the policies in the store.
pub const ENFORCE_WAIT: Duration = Duration::from_secs(20);

/// How `lab probe` probes.
pub struct How {
    pub timeout_ms: u64,
    /// Wait this long for every host to enforce the store's policies first.
    pub enforced_within: Option<Duration>,
    /// At the containers' IPv6 addresses.
    pub ipv6: bool,
    pub output: weft_lab::ProbeOutput,
}

/// Probes, explains and prints; the exit code.
pub async fn run(registry: &Registry, lab: &str, ports: &str, how: How) -> Result<i32, CliError> {
    let How {
        timeout_ms,
        enforced_within,
        ipv6,
        output,
    } = how;
    let state = LabState::load(lab)?;
    let ports = pods::parse_ports(ports)?;
    // Probed once every host enforces the policies in the store (a probe right after
    // `policy apply --no-wait` would see the old rules); a host that does not by then
    // is named, and its cells show it.
    if let Some(within) = enforced_within {
        if let Err(e) = crate::enforced::wait(registry, within).await {
            eprintln!("weftctl: {e}");
        }
    }
    let mut cells = pods::probe(&state, &ports, Duration::from_millis(timeout_ms), ipv6);
    explain_cells(registry, &state, &mut cells, ipv6).await?;
    pods::print(&cells, output);
    Ok(i32::from(cells.iter().any(|c| c.agrees() == Some(false))))
}
