//! What one element change costs the kernel, as the agent makes it: N transactions
//! of one element each, over netlink, into set SET of table `ip TABLE`, timed. Used
//! by `bench/policy.sh` to show why dispatch is by plain sets and not a verdict map
//! (an element that jumps to a chain makes the kernel validate the whole table).
//!
//! Usage: element_cost TABLE SET ELEMENT N   (ELEMENT with `{}` for the count, as
//! nft writes it: `"vs{}"`, or `"vm{}" : jump in_ns_x`). Prints p50 and p99 in ms.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, table, set, element, n] = &args[..] else {
        eprintln!("usage: element_cost TABLE SET ELEMENT N");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N: a number");
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let one = element.replace("{}", &i.to_string());
        let add = BTreeMap::from([(set.clone(), BTreeSet::from([one]))]);
        let t = Instant::now();
        let written = weft_kernel::nft_netlink::update(table, &add, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("adding to {set}: {e}"));
        assert!(written, "{element}: not an element netlink can write");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("p50 {:.3} p99 {:.3}", pct(0.5), pct(0.99));
}
