//! The entities a policy set is built with besides its own files: principals from API keys
//! and the tools of loaded plugins. This is the entity provider every rebuild of the active
//! snapshot pulls from, a reload as much as an entity change, and it changes only inside
//! the engine's one update lock, so neither kind of rebuild can start from a copy the other
//! has already replaced.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeEntities {
    /// Cedar JSON entities by uid; a later entity of a uid replaces the earlier one.
    by_uid: BTreeMap<String, Value>,
    /// Registrations (e.g. a plugin at one digest) whose entities are in `by_uid`.
    registered: BTreeSet<String>,
}

impl RuntimeEntities {
    /// Adds or replaces entities by uid. Returns whether anything changed.
    pub fn upsert(&mut self, entities: impl IntoIterator<Item = Value>) -> bool {
        let mut changed = false;
        for entity in entities {
            let key = uid_key(&entity);
            if self.by_uid.get(&key) != Some(&entity) {
                self.by_uid.insert(key, entity);
                changed = true;
            }
        }
        changed
    }

    /// Adds the entities of registration `key` unless it is already there.
    /// Returns whether anything changed.
    pub fn register(&mut self, key: &str, entities: impl IntoIterator<Item = Value>) -> bool {
        if !self.registered.insert(key.to_owned()) {
            return false;
        }
        self.upsert(entities);
        true
    }

    pub fn list(&self) -> Vec<Value> {
        self.by_uid.values().cloned().collect()
    }

    /// The registrations, for a snapshot built from these entities to answer
    /// "is it registered?" without a lock.
    pub fn registered(&self) -> Arc<BTreeSet<String>> {
        Arc::new(self.registered.clone())
    }
}

/// `Type::"id"` of a Cedar JSON entity (either `uid` form), or the uid's JSON
/// text when it has neither (the entity is then refused by validation).
fn uid_key(entity: &Value) -> String {
    let uid = entity.get("uid").unwrap_or(&Value::Null);
    let uid = uid.get("__entity").unwrap_or(uid);
    match (
        uid.get("type").and_then(Value::as_str),
        uid.get("id").and_then(Value::as_str),
    ) {
        (Some(ty), Some(id)) => format!("{ty}::{id:?}"),
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(id: &str, parent: &str) -> Value {
        json!({ "uid": { "type": "Tool", "id": id }, "attrs": {}, "parents": [{ "type": "Plugin", "id": parent }] })
    }

    #[test]
    fn upserts_replace_by_uid_and_say_whether_anything_changed() {
        let mut entities = RuntimeEntities::default();
        assert!(entities.upsert([tool("p.a", "p")]));
        assert!(
            !entities.upsert([tool("p.a", "p")]),
            "the same entity again"
        );
        let explicit = json!({ "uid": { "__entity": { "type": "Tool", "id": "p.a" } }, "attrs": {}, "parents": [] });
        assert!(entities.upsert([explicit.clone()]));
        assert_eq!(entities.list(), [explicit]);
    }

    #[test]
    fn a_registration_is_added_once() {
        let mut entities = RuntimeEntities::default();
        assert!(entities.register("p@1", [tool("p.a", "p")]));
        assert!(!entities.register("p@1", [tool("p.b", "p")]));
        assert_eq!(entities.list().len(), 1);
        assert!(entities.registered().contains("p@1"));
    }
}
