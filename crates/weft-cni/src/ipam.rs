//! Addresses for containers, from the node's subnet, kept on disk.
//!
//! The pool is the node's subnet, shared by every CNI network on the node that uses it
//! (a bridged and a routed network draw from the same addresses). One file per allocated
//! address in `<dataDir>/<subnet>/` (e.g. `10.244.3.0-24`), named by the address and
//! holding `{"containerID":…,"ifname":…,"network":…}`: JSON, so no byte of an identifier
//! can split a field (records of earlier versions, one field per line, are still read).
//! A record that cannot be read is an error naming its file, never a silent miss: a
//! missed record is an address that is never freed. A claim writes a complete temporary file and
//! hard-links it to the address's name: `link(2)` fails if the name exists, so of two
//! concurrent claims exactly one wins, without a lock, and an allocation file is never
//! seen half-written. A plugin killed mid-ADD leaves at worst a complete allocation for a
//! container the runtime will DEL (DEL frees by container and interface) or that GC will
//! collect, and stray temporary files that the next claim sweeps.

use std::fs;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;

use crate::spec::{CniError, CniResult, Code};

/// The allocations of one node subnet.
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
}

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub ifname: String,
    /// The CNI network it was made for (GC frees only its own network's).
    pub network: String,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> CniError {
    CniError::new(Code::Io, format!("cannot {what} {}", path.display())).with_details(e.to_string())
}

/// What an allocation file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    network: String,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings serialize")
    }

    /// JSON, or the one-field-per-line form earlier versions wrote (whose identifiers
    /// were never checked: exactly three non-empty lines, or it is damaged).
    fn decode(text: &str) -> Result<Record, Damaged> {
        if text.starts_with('{') {
            return Ok(serde_json::from_str(text)?);
        }
        match text.lines().collect::<Vec<_>>().as_slice() {
            [id, ifname, network] if !id.is_empty() && !ifname.is_empty() => Ok(Record {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
                network: network.to_string(),
            }),
            _ => Err(Damaged::Shape),
        }
    }
}

/// Why an allocation record cannot be read.
#[derive(Debug, thiserror::Error)]
enum Damaged {
    #[error("its name is not an IPv4 address")]
    Name,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("neither JSON nor the three lines of an earlier version")]
    Shape,
}

/// Why an address cannot be handed to a container that asks for it.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("{ip} is outside this node's subnet {subnet}")]
    Outside { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("{ip} is reserved in {subnet} (network, broadcast or gateway)")]
    Reserved { ip: Ipv4Addr, subnet: Ipv4Net },
}

/// Who asks for an address.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub network: &'a str,
}

/// Temporary files older than this are leftovers of a killed plugin.
const STALE_TMP: Duration = Duration::from_secs(60);

impl Ipam {
    /// The allocations of `subnet` under `data_dir`, handing out its addresses except
    /// the network address, `gateway` and the broadcast address.
    pub fn open(data_dir: &Path, subnet: Ipv4Net, gateway: Ipv4Addr) -> CniResult<Ipam> {
        let dir = data_dir.join(format!("{}-{}", subnet.network(), subnet.prefix_len()));
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        Ok(Ipam {
            dir,
            subnet,
            gateway,
        })
    }

    /// The records of addresses held outside the node's subnet (claimed cluster-wide
    /// through the agent), in `<dataDir>/outside/`: kept like the others so DEL and GC
    /// find them. The agent decided the address is fine; the pool is 0.0.0.0/0, which
    /// takes any address but 0.0.0.0 and 255.255.255.255.
    pub fn outside(data_dir: &Path) -> CniResult<Ipam> {
        Self::unbounded(data_dir, "outside")
    }

    /// The records of addresses taken from blocks through the agent (block IPAM), in
    /// `<dataDir>/blocks/`, kept like the others so DEL, CHECK and GC find them.
    pub fn blocks(data_dir: &Path) -> CniResult<Ipam> {
        Self::unbounded(data_dir, "blocks")
    }

    fn unbounded(data_dir: &Path, name: &str) -> CniResult<Ipam> {
        let dir = data_dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        Ok(Ipam {
            dir,
            subnet: Ipv4Net::default(),
            gateway: Ipv4Addr::UNSPECIFIED,
        })
    }

    fn usable(&self, ip: Ipv4Addr) -> Result<(), Unusable> {
        let subnet = self.subnet;
        if !subnet.contains(&ip) {
            return Err(Unusable::Outside { ip, subnet });
        }
        if ip == subnet.network() || ip == subnet.broadcast() || ip == self.gateway {
            return Err(Unusable::Reserved { ip, subnet });
        }
        Ok(())
    }

    /// The allocation recorded at `path` (named by its address).
    fn read(&self, path: &Path) -> CniResult<Allocation> {
        let damaged = |why: Damaged| {
            CniError::new(
                Code::Io,
                format!("damaged allocation record {}", path.display()),
            )
            .with_details(why.to_string())
        };
        let ip: Ipv4Addr = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| damaged(Damaged::Name))?;
        let text = fs::read_to_string(path).map_err(|e| io("read", path, e))?;
        let record = Record::decode(&text).map_err(damaged)?;
        Ok(Allocation {
            ip,
            container_id: record.container_id,
            ifname: record.ifname,
            network: record.network,
        })
    }

    /// The subnet this pool hands out.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// Every allocation under `data_dir`, whatever subnet it came from (DEL and GC must
    /// find allocations even after the node's subnet changed, or without knowing it).
    pub fn everywhere(data_dir: &Path) -> CniResult<Vec<Ipam>> {
        let Ok(entries) = fs::read_dir(data_dir) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let (ip, len) = name.split_once('-')?;
                let subnet = Ipv4Net::new(ip.parse().ok()?, len.parse().ok()?).ok()?;
                Some(Ipam {
                    dir: data_dir.join(name),
                    subnet,
                    gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
                })
            })
            .collect())
    }

    /// Every set of records under `data_dir` with what to call it: each subnet's (by
    /// subnet), and, where they exist, the records of block addresses (`blocks`) and of
    /// addresses held outside the subnet (`outside`), so a listing shows every address
    /// a container holds. Creates nothing.
    pub fn all_records(data_dir: &Path) -> CniResult<Vec<(String, Ipam)>> {
        let mut out: Vec<(String, Ipam)> = Self::everywhere(data_dir)?
            .into_iter()
            .map(|p| (p.subnet.to_string(), p))
            .collect();
        for name in ["blocks", "outside"] {
            let dir = data_dir.join(name);
            if dir.is_dir() {
                out.push((
                    name.to_owned(),
                    Ipam {
                        dir,
                        subnet: Ipv4Net::default(),
                        gateway: Ipv4Addr::UNSPECIFIED,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Every allocation (and sweeps stale temporary files on the way).
    pub fn list(&self) -> CniResult<Vec<Allocation>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io("read", &self.dir, e))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_TMP);
                if old.unwrap_or(false) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if name.to_str().is_some_and(|n| n.parse::<Ipv4Addr>().is_ok()) {
                match self.read(&path) {
                    Ok(a) => out.push(a),
                    // Released by a concurrent DEL between the listing and the read.
                    Err(_) if !path.exists() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// The address held by this container interface, if any.
    pub fn find(&self, container_id: &str, ifname: &str) -> CniResult<Option<Allocation>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname))
    }

    /// Tries to claim `ip`; `Ok(false)` if someone holds it.
    fn claim(&self, ip: Ipv4Addr, who: &Claimant) -> CniResult<bool> {
        let Claimant {
            container_id,
            ifname,
            network,
        } = who;
        let tmp = self.dir.join(format!(
            ".tmp-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut f = fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        let record = Record {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            network: network.to_string(),
        };
        f.write_all(&record.encode())
            .map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("sync", &tmp, e))?;
        let target = self.dir.join(ip.to_string());
        let result = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("claim", &target, e)),
        }
    }

    /// An address for the container interface: the one it already holds (ADD retried),
    /// else `wanted` if free, else the next free one after the last handed out.
    pub fn allocate(&self, who: &Claimant, wanted: Option<Ipv4Addr>) -> CniResult<Ipv4Addr> {
        if let Some(a) = self.find(who.container_id, who.ifname)? {
            if wanted.is_none_or(|w| w == a.ip) {
                return Ok(a.ip);
            }
        }
        if let Some(ip) = wanted {
            self.usable(ip).map_err(|why| {
                CniError::new(Code::AddressUnavailable, format!("cannot assign {ip}"))
                    .with_details(why.to_string())
            })?;
            if self.claim(ip, who)? {
                return Ok(ip);
            }
            let holder = self
                .read(&self.dir.join(ip.to_string()))
                .map(|a| a.container_id)
                .unwrap_or_else(|e| e.msg);
            return Err(CniError::new(
                Code::AddressUnavailable,
                format!("{ip} is already assigned"),
            )
            .with_details(format!("held by container {holder}")));
        }
        let first = u32::from(self.subnet.network()) + 1;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let hint = self.dir.join("last_reserved_ip");
        let start = fs::read_to_string(&hint)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(|ip| u32::from(ip) + 1)
            .filter(|a| (first..=last).contains(a))
            .unwrap_or(first);
        let span = last - first + 1;
        for step in 0..span {
            let ip = Ipv4Addr::from(first + (start - first + step) % span);
            if self.usable(ip).is_err() {
                continue;
            }
            if self.claim(ip, who)? {
                let _ = fs::write(&hint, ip.to_string()); // a hint only: losing it costs a scan
                return Ok(ip);
            }
        }
        Err(CniError::new(
            Code::AddressUnavailable,
            format!("no free address left in {}", self.subnet),
        ))
    }

    /// Frees whatever this container interface holds; absent is fine (DEL is idempotent).
    pub fn release(&self, container_id: &str, ifname: &str) -> CniResult<Vec<Ipv4Addr>> {
        let mut freed = Vec::new();
        for a in self.list()? {
            if a.container_id == container_id && a.ifname == ifname {
                let path = self.dir.join(a.ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => freed.push(a.ip),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", &path, e)),
                }
            }
        }
        Ok(freed)
    }

    /// Frees every allocation of `network` whose container interface is not in `valid`.
    pub fn gc(&self, network: &str, valid: &[(String, String)]) -> CniResult<Vec<Allocation>> {
        let mut freed = Vec::new();
        for a in self.stale(network, valid)? {
            let path = self.dir.join(a.ip.to_string());
            if fs::remove_file(&path).is_ok() {
                freed.push(a);
            }
        }
        Ok(freed)
    }

    /// The allocations of `network` whose container interface is not in `valid`, left
    /// in place (for records that need something done before they go).
    pub fn stale(&self, network: &str, valid: &[(String, String)]) -> CniResult<Vec<Allocation>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|a| a.network == network)
            .filter(|a| {
                !valid.iter().any(|(id, ifname)| {
                    *id == a.container_id && (ifname.is_empty() || *ifname == a.ifname)
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str) -> Claimant<'_> {
        Claimant {
            container_id: id,
            ifname: "eth0",
            network: "net",
        }
    }

    fn ipam(dir: &Path) -> Ipam {
        Ipam::open(
            dir,
            "10.244.3.0/29".parse().unwrap(),
            "10.244.3.1".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn every_record_is_listed_with_where_it_came_from() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            Ipam::all_records(d.path()).unwrap().is_empty(),
            "creates nothing"
        );
        ipam(d.path()).allocate(&who("c1"), None).unwrap();
        let blocks = Ipam::blocks(d.path()).unwrap();
        blocks
            .allocate(&who("c2"), Some("10.248.0.5".parse().unwrap()))
            .unwrap();
        let listed: Vec<(String, String, String)> = Ipam::all_records(d.path())
            .unwrap()
            .iter()
            .flat_map(|(from, p)| {
                p.list()
                    .unwrap()
                    .into_iter()
                    .map(|a| (from.clone(), a.ip.to_string(), a.container_id))
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("10.244.3.0/29".into(), "10.244.3.2".into(), "c1".into()),
                ("blocks".into(), "10.248.0.5".into(), "c2".into()),
            ]
        );
    }

    #[test]
    fn hands_out_skips_reserved_and_reports_exhaustion() {
        let d = tempfile::tempdir().unwrap();
        let p = ipam(d.path());
        let ips: Vec<String> = (0..5)
            .map(|i| {
                p.allocate(&who(&format!("c{i}")), None)
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            ips,
            [
                "10.244.3.2",
                "10.244.3.3",
                "10.244.3.4",
                "10.244.3.5",
                "10.244.3.6"
            ]
        );
        let err = p.allocate(&who("c9"), None).unwrap_err();
        assert_eq!(err.code, Code::AddressUnavailable);
        assert_eq!(
            p.allocate(&who("c2"), None).unwrap().to_string(),
            "10.244.3.4",
            "ADD retried keeps its address"
        );
    }

    #[test]
    fn fixed_addresses_and_release() {
        let d = tempfile::tempdir().unwrap();
        let p = ipam(d.path());
        assert_eq!(
            p.allocate(&who("a"), Some("10.244.3.5".parse().unwrap()))
                .unwrap()
                .to_string(),
            "10.244.3.5"
        );
        let taken = p
            .allocate(&who("b"), Some("10.244.3.5".parse().unwrap()))
            .unwrap_err();
        assert!(
            taken.msg.contains("already assigned") && taken.details.contains("a"),
            "{taken}"
        );
        let outside = p
            .allocate(&who("b"), Some("10.9.9.9".parse().unwrap()))
            .unwrap_err();
        assert!(outside.details.contains("outside"), "{outside}");
        let gw = p
            .allocate(&who("b"), Some("10.244.3.1".parse().unwrap()))
            .unwrap_err();
        assert!(gw.details.contains("reserved"), "{gw}");
        assert_eq!(p.release("a", "eth0").unwrap().len(), 1);
        assert!(
            p.release("a", "eth0").unwrap().is_empty(),
            "release is idempotent"
        );
        assert!(p.list().unwrap().is_empty());
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let d = tempfile::tempdir().unwrap();
        let p = ipam(d.path());
        for id in ["keep", "drop1", "drop2"] {
            p.allocate(&who(id), None).unwrap();
        }
        let other = Claimant {
            container_id: "elsewhere",
            ifname: "eth0",
            network: "other-net",
        };
        p.allocate(&other, None).unwrap();
        let freed = p.gc("net", &[("keep".into(), "eth0".into())]).unwrap();
        assert_eq!(freed.len(), 2);
        let left: Vec<_> = p
            .list()
            .unwrap()
            .into_iter()
            .map(|a| a.container_id)
            .collect();
        assert_eq!(
            left,
            ["keep", "elsewhere"],
            "another network's allocations are not this GC's to free"
        );
    }

    #[test]
    fn racing_threads_never_share_an_address() {
        let d = tempfile::tempdir().unwrap();
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..5)
                .map(|i| {
                    let dir = d.path().to_path_buf();
                    s.spawn(move || ipam(&dir).allocate(&who(&format!("c{i}")), None).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = ips.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{ips:?}");
    }

    #[test]
    fn records_cannot_be_split_and_damage_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = ipam(d.path());
        // The plugin refuses such identifiers; the record format must hold them anyway.
        let odd = Claimant {
            container_id: "a\nb",
            ifname: "eth0\n",
            network: "net\u{0}",
        };
        let ip = p.allocate(&odd, None).unwrap();
        assert_eq!(p.find("a\nb", "eth0\n").unwrap().unwrap().ip, ip);
        assert!(p.find("a", "eth0").unwrap().is_none());
        assert_eq!(p.release("a\nb", "eth0\n").unwrap(), [ip]);

        // A record of an earlier version still counts.
        let legacy = p.dir.join("10.244.3.6");
        fs::write(&legacy, "old\neth0\nnet\n").unwrap();
        assert_eq!(p.find("old", "eth0").unwrap().unwrap().network, "net");
        // A damaged record is an error that names its file, not a free address.
        fs::write(&legacy, "{\"containerID\":").unwrap();
        let err = p.list().unwrap_err();
        assert!(err.msg.contains("10.244.3.6"), "{err}");
        assert!(p.allocate(&who("x"), None).is_err());
    }
}
