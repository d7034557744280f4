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
        let flow = Flow {
            src: from.ip.into(),
            dst: to.ip.into(),
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

/// Probes, explains and prints; the exit code.
pub async fn run(
    registry: &Registry,
    lab: &str,
    ports: &str,
    timeout_ms: u64,
    enforced_within: Option<Duration>,
    output: weft_lab::ProbeOutput,
) -> Result<i32, CliError> {
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
    let mut cells = pods::probe(&state, &ports, Duration::from_millis(timeout_ms));
    explain_cells(registry, &state, &mut cells).await?;
    pods::print(&cells, output);
    Ok(i32::from(cells.iter().any(|c| c.agrees() == Some(false))))
}
