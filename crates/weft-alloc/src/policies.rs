//! Network policy in the store (the types in [`weft_model::policies`]): policies,
//! identities and namespace labels, written and read whole.

use std::net::Ipv4Addr;

use weft_policy::{Labels, Policy};
use weft_store::StoreError;

pub use weft_model::policies::*;

use crate::registry::Registry;

impl Registry {
    fn policy_key(&self, p: &Policy) -> String {
        match p {
            Policy::Namespaced(n) => format!(
                "{}networkpolicies/{}/{}",
                self.keys().policy(),
                n.namespace(),
                n.metadata.name
            ),
            Policy::Cluster(c) => {
                format!(
                    "{}clusterpolicies/{}",
                    self.keys().policy(),
                    c.metadata.name
                )
            }
        }
    }

    /// Everything under the policy prefix.
    pub async fn policy_state(&self) -> Result<PolicyState, StoreError> {
        let prefix = self.keys().policy();
        let listing = self.store().list(&prefix).await?;
        let mut st = PolicyState {
            revision: listing.revision,
            ..Default::default()
        };
        for kv in &listing.kvs {
            let rest = &kv.key[prefix.len()..];
            if let Err(e) = st.read_entry(rest, Some(&kv.value)) {
                st.unreadable.push((kv.key.clone(), e.to_string()));
            }
        }
        Ok(st)
    }

    /// Writes checked policies (see [`weft_policy::parse_documents`]); each replaces
    /// one of the same kind and name. Returns whether each was new.
    pub async fn apply_policies(&self, ps: &[Policy]) -> Result<Vec<bool>, StoreError> {
        let mut out = Vec::new();
        for p in ps {
            let key = self.policy_key(p);
            let value = serde_json::to_vec(p).expect("policy serializes");
            let new = self.store().get(&key).await?.is_none();
            self.store().put(&key, &value, None).await?;
            out.push(new);
        }
        Ok(out)
    }

    /// Deletes a NetworkPolicy (`namespace/name`) or a ClusterPolicy (`name`).
    pub async fn delete_policy(&self, cluster: bool, id: &str) -> Result<bool, StoreError> {
        let key = if cluster {
            format!("{}clusterpolicies/{id}", self.keys().policy())
        } else {
            format!("{}networkpolicies/{id}", self.keys().policy())
        };
        self.store().delete(&key).await
    }

    fn identity_key(&self, ip: Ipv4Addr) -> String {
        format!("{}endpoints/{ip}", self.keys().policy())
    }

    /// The identity recorded for `ip`, if a readable one is.
    pub async fn identity(&self, ip: Ipv4Addr) -> Result<Option<Identity>, StoreError> {
        Ok(self
            .store()
            .get(&self.identity_key(ip))
            .await?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// Records (or replaces) the identity of the endpoint at `ip`; the revision written.
    pub async fn put_identity(
        &self,
        ip: Ipv4Addr,
        id: &Identity,
    ) -> Result<weft_store::Revision, StoreError> {
        let key = self.identity_key(ip);
        let value = serde_json::to_vec(id).expect("identity serializes");
        self.store().put(&key, &value, None).await
    }

    /// Forgets the identity of the endpoint at `ip`.
    pub async fn delete_identity(&self, ip: Ipv4Addr) -> Result<bool, StoreError> {
        self.store().delete(&self.identity_key(ip)).await
    }

    /// Sets a namespace's labels (replacing them).
    pub async fn put_namespace(&self, ns: &str, labels: &Labels) -> Result<(), StoreError> {
        let key = format!("{}namespaces/{ns}", self.keys().policy());
        let value = serde_json::to_vec(&NamespaceLabels {
            labels: labels.clone(),
        })
        .expect("labels serialize");
        self.store().put(&key, &value, None).await.map(|_| ())
    }
}
