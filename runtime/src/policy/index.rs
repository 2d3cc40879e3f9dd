//! Scope index: for one action, the policies whose principal and resource
//! scopes can match a request. Cedar evaluates every policy it is given, so
//! handing it only the candidates keeps a decision cheap in a large set. A
//! policy whose scope cannot match is neither satisfied nor erroring, so the
//! decision and its determining policies are exactly those of the full set.

use cedar_policy::{
    Entities, EntityUid, Policy, PolicySet, PrincipalConstraint, ResourceConstraint,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Candidate sets kept per index before the cache starts over.
const CACHE_LIMIT: usize = 4096;

/// Policies keyed by the entity their scope names.
#[derive(Default, Clone)]
struct ScopeIndex {
    /// Unconstrained, or constrained by type only.
    any: Vec<u32>,
    /// `== uid`, `in uid`, `is T in uid`, by that uid.
    by_uid: HashMap<EntityUid, Vec<u32>>,
}

impl ScopeIndex {
    fn add(&mut self, n: u32, uid: Option<EntityUid>) {
        match uid {
            Some(uid) => self.by_uid.entry(uid).or_default().push(n),
            None => self.any.push(n),
        }
    }

    /// Policies that may match `uid`: by the entity itself or any ancestor.
    fn candidates(&self, uid: &EntityUid, entities: &Entities) -> Vec<u32> {
        let mut out = self.any.clone();
        if let Some(list) = self.by_uid.get(uid) {
            out.extend_from_slice(list);
        }
        if let Some(ancestors) = entities.ancestors(uid) {
            for ancestor in ancestors {
                if let Some(list) = self.by_uid.get(ancestor) {
                    out.extend_from_slice(list);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The candidate policies of one action.
pub(crate) struct ActionIndex {
    policies: Vec<Policy>,
    principal: ScopeIndex,
    resource: ScopeIndex,
    cache: Mutex<HashMap<Vec<u32>, Arc<PolicySet>>>,
}

impl ActionIndex {
    pub fn new(policies: Vec<Policy>) -> Self {
        let mut principal = ScopeIndex::default();
        let mut resource = ScopeIndex::default();
        for (n, policy) in policies.iter().enumerate() {
            let n = n as u32;
            principal.add(
                n,
                match policy.principal_constraint() {
                    PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
                    PrincipalConstraint::Eq(uid)
                    | PrincipalConstraint::In(uid)
                    | PrincipalConstraint::IsIn(_, uid) => Some(uid),
                },
            );
            resource.add(
                n,
                match policy.resource_constraint() {
                    ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
                    ResourceConstraint::Eq(uid)
                    | ResourceConstraint::In(uid)
                    | ResourceConstraint::IsIn(_, uid) => Some(uid),
                },
            );
        }
        Self {
            policies,
            principal,
            resource,
            cache: Mutex::default(),
        }
    }

    /// The policies that can apply to a request for `principal` on `resource`.
    pub fn candidates(
        &self,
        principal: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
    ) -> Arc<PolicySet> {
        let by_principal = self.principal.candidates(principal, entities);
        let by_resource = self.resource.candidates(resource, entities);
        let key = intersect(&by_principal, &by_resource);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = cache.get(&key) {
            return set.clone();
        }
        let set = PolicySet::from_policies(key.iter().map(|&n| self.policies[n as usize].clone()))
            .expect("a subset of a valid set is valid");
        let set = Arc::new(set);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, set.clone());
        set
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}
