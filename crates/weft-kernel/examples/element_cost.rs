//! What one element change costs the kernel, as the agent makes it: N transactions
//! of one element each, over netlink, into set SET of table `ip TABLE`, timed. Used
//! by `bench/policy.sh` to show why dispatch is by plain sets and not a verdict map
//! (an element that jumps to a chain makes the kernel validate the whole table).
//!
//! Usage: element_cost TABLE SET ELEMENT N [CHAIN]   (ELEMENT with `{}` for the
//! count, as nft writes it: `"vs{}"`; with CHAIN, SET is a verdict map and each
//! element jumps to CHAIN). Prints p50 and p99 in ms.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use weft_kernel::nft_sets::Element;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (table, set, element, n, jump) = match &args[..] {
        [_, t, s, e, n] => (t, s, e, n, None),
        [_, t, s, e, n, c] => (t, s, e, n, Some(c)),
        _ => {
            eprintln!("usage: element_cost TABLE SET ELEMENT N [CHAIN]");
            std::process::exit(2);
        }
    };
    let n: usize = n.parse().expect("N: a number");
    let table =
        &weft_kernel::nft_sets::TableId::new(weft_kernel::nft_sets::Family::Ip, table.as_str());
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let one: Element = element
            .replace("{}", &i.to_string())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        let done = match jump {
            None => {
                let add = BTreeMap::from([(set.clone(), BTreeSet::from([one]))]);
                weft_kernel::nft_netlink::update(table, &add, &BTreeMap::new())
            }
            Some(chain) => weft_kernel::nft_netlink::add_jump(table, set, one, chain),
        };
        done.unwrap_or_else(|e| panic!("adding to {set}: {e}"));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("p50 {:.3} p99 {:.3}", pct(0.5), pct(0.99));
}
