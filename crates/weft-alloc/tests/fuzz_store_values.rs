//! A bounded, deterministic fuzz run over what the store can hold (part of the suite):
//! network configs, lease keys and values, single-address claims, as random bytes and
//! as near-valid JSON with hostile fields. Nothing panics; every refusal names its
//! problem; whatever parses, the screening of leases takes without panicking either.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use weft_alloc::screen::screen;
use weft_alloc::{NetworkConfig, Registry};
use weft_store::KeyValue;

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let store = weft_store::embedded::EmbeddedStore::open(dir.join("s.db")).unwrap();
        Registry::new(Arc::new(store), weft_store::DEFAULT_PREFIX)
    })
}

/// Strings a careless or hostile writer might put anywhere.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9./-]{0,24}",
        Just("10.244.0.0/16".to_string()),
        Just("10.244.1.0/33".to_string()),
        Just("255.255.255.255/0".to_string()),
        Just("".to_string()),
        Just("\u{0}\n\"".to_string()),
    ]
}

/// A JSON value of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        hostile_text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(hostile_text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A config or a lease with each field drawn from the hostile set.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let config = (
        hostile_text(),
        any_json(),
        any_json(),
        any_json(),
        hostile_text(),
    )
        .prop_map(|(network, len, min, backend, kind)| {
            serde_json::json!({
                "Network": network, "SubnetLen": len, "SubnetMin": min,
                "Backend": {"Type": kind, "VNI": backend.clone(), "Port": backend},
            })
        });
    let lease = (hostile_text(), any_json(), hostile_text(), any_json()).prop_map(
        |(ip, v6, kind, data)| {
            serde_json::json!({"PublicIP": ip, "PublicIPv6": v6, "BackendType": kind, "BackendData": data})
        },
    );
    prop_oneof![config, lease, any_json()].prop_map(|v| v.to_string().into_bytes())
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), near_valid()]
}

fn key() -> impl Strategy<Value = String> {
    let reg = registry();
    let (subnets, addresses) = (reg.keys().subnets(), reg.keys().addresses());
    prop_oneof![
        hostile_text().prop_map(move |n| format!("{subnets}{n}")),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}-[0-9]{1,2}"
            .prop_map(move |n| format!("{}{n}", registry().keys().subnets())),
        hostile_text().prop_map(move |n| format!("{addresses}{n}")),
        hostile_text(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        rng_seed: RngSeed::Fixed(0x5eed_0017),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_values_never_panic_and_every_refusal_names_its_problem(
        key in key(),
        value in value(),
        valid_config in any::<bool>(),
    ) {
        let reg = registry();
        match NetworkConfig::parse(&value) {
            Ok(cfg) => prop_assert!(cfg.subnet_len >= cfg.network.prefix_len()),
            Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
        }
        let kv = KeyValue {
            key,
            value: value.clone(),
            create_revision: 1,
            mod_revision: 2,
            lease: valid_config.then_some(7),
        };
        match reg.parse_lease(&kv) {
            Ok(lease) => {
                let cfg = NetworkConfig::parse(
                    br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
                ).unwrap();
                let s = screen(&cfg, [&lease]);
                prop_assert_eq!(s.standing.len() + s.rejected.len(), 1);
                for r in &s.rejected {
                    prop_assert!(!r.to_string().is_empty());
                }
            }
            Err(skipped) => {
                prop_assert_eq!(&skipped.key, &kv.key);
                prop_assert!(!skipped.reason.trim().is_empty());
            }
        }
        let _ = reg.parse_address(&kv);
    }
}
