//! Names for the resolver (`weft_dns`): which container an endpoint is, and what the
//! containers on its network call it there (its name, its aliases), recorded in the
//! endpoint's record, where every node's resolver reads them.
//!
//! Docker passes a driver neither: they are read from the daemon after Join, by the
//! task that also reads the labels (see [`crate::identity`]), and by the sync for any
//! endpoint of this node not named yet (an agent restart in between).

use std::net::Ipv4Addr;

use tracing::info;
use weft_alloc::named::{short, NamedNetwork};

use crate::driver::Driver;
use crate::error::DriverError;

/// The names an endpoint answers to: the container's name (without Docker's leading
/// `/`) and its aliases on the network, without repeats, in that order.
pub fn names(container_name: &str, aliases: Vec<String>) -> Vec<String> {
    let mut out = vec![container_name.trim_start_matches('/').to_owned()];
    for a in aliases {
        if !a.is_empty() && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

impl Driver {
    /// Records that the endpoint `endpoint_id` at `ip` is container `cid`, named
    /// `name`, with its aliases on `net` as its daemon has them.
    pub(crate) async fn record_names(
        &self,
        net: &NamedNetwork,
        ip: Ipv4Addr,
        endpoint_id: &str,
        cid: &str,
        name: &str,
    ) -> Result<(), DriverError> {
        let engine = self.engine.as_ref().ok_or(DriverError::NoEngine)?;
        let aliases = engine
            .container_aliases(cid, &net.name)
            .await?
            .ok_or_else(|| DriverError::NoContainer(short(cid).to_owned()))?;
        let names = names(name, aliases);
        let written = self
            .registry
            .modify_endpoint(&net.name, ip, |e| {
                // Only while the record is still this endpoint's.
                if e.endpoint_id == endpoint_id {
                    e.container = cid.to_owned();
                    e.names = names.clone();
                }
            })
            .await
            .map_err(|source| DriverError::Record {
                name: name.to_owned(),
                ip,
                source: Box::new(source),
            })?;
        if written.is_some_and(|e| e.container == cid) {
            info!(network = %net.name, %ip, names = %names.join(","), "container names recorded");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_then_each_alias_once() {
        let got = names(
            "/a1",
            vec![
                "web".into(),
                "a1".into(),
                "935ca1a411c0".into(),
                "web".into(),
            ],
        );
        assert_eq!(got, vec!["a1", "web", "935ca1a411c0"]);
    }
}
