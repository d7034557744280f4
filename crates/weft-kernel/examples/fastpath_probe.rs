use std::path::Path;
use weft_kernel::bpf::{load_sched_cls, FastPath};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (ns, dev, cluster) = (a[1].clone(), a[2].clone(), a[3].parse().unwrap());
    let peer = a.get(4).map(|p| p.parse().unwrap());
    let r = weft_kernel::netns::run_in(Path::new(&ns), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            let k = weft_kernel::Kernel::connect().unwrap();
            let idx = k.link_index(&dev).await.unwrap().unwrap();
            let prog = load_sched_cls(
                "weft_fastpath",
                &FastPath {
                    cluster,
                    peer_subnet: peer,
                }
                .program(),
            );
            let prog = match prog {
                Ok(p) => p,
                Err(e) => {
                    println!("{e}");
                    return;
                }
            };
            println!(
                "{:?}",
                weft_kernel::tc::ensure_ingress_program(&handle, idx, &prog).await
            );
        })
    });
    println!("{r:?}");
}
