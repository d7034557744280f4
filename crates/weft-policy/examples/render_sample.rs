//! Prints the nftables table for the policies in FILE and a sample of endpoints (a
//! reading aid; `nft -c -f` checks it).
use weft_policy::render::{render_table, Attachment, LocalEndpoint};
use weft_policy::verdict::{Endpoint, World};
use weft_policy::{parse_documents, Labels};

fn main() {
    let text = std::fs::read_to_string(std::env::args().nth(1).expect("policy file")).unwrap();
    let ps = parse_documents(&text).unwrap();
    let mut w = World::default();
    for (i, (ns, pod)) in [("x", "a"), ("x", "b"), ("y", "a")].iter().enumerate() {
        w.namespaces.insert(
            ns.to_string(),
            Labels::from([("ns".into(), ns.to_string())]),
        );
        w.endpoints.push(Endpoint {
            name: format!("{ns}/{pod}"),
            namespace: ns.to_string(),
            labels: Labels::from([("pod".into(), pod.to_string())]),
            ip: format!("10.248.0.{}", i + 1).parse().unwrap(),
            ip6: None,
        });
    }
    let locals: Vec<LocalEndpoint> = w
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| LocalEndpoint {
            endpoint: e.clone(),
            interface: format!("weft{i:011x}"),
            attachment: if i == 2 {
                Attachment::Bridged
            } else {
                Attachment::Routed
            },
            pending: false,
        })
        .collect();
    let t = render_table(&w, &ps, &locals);
    print!("{}", t.structure());
    for (name, elems) in t.elements.iter().filter(|(_, e)| !e.is_empty()) {
        let items: Vec<String> = elems.iter().map(ToString::to_string).collect();
        println!("add element ip weftpol {name} {{ {} }}", items.join(", "));
    }
}
