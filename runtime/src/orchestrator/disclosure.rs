//! What a caller who is not an admin may see of the host: never a path on it. Admins (and the
//! server log) get the whole story; everyone else gets names and stable codes.

use super::Caller;
use crate::policy::PolicyStatus;

/// The policy status as `caller` may see it: where the set was loaded from and why a reload
/// was refused name host files, so only admins see them.
pub fn policy_status(status: PolicyStatus, caller: &Caller) -> PolicyStatus {
    if caller.admin {
        return status;
    }
    PolicyStatus {
        origin: if status.origin == "embedded" {
            status.origin
        } else {
            "directory".into()
        },
        last_error: status
            .last_error
            .map(|_| "the policy set on disk was refused (admins see why)".into()),
        ..status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(admin: bool) -> Caller {
        Caller {
            principal: "p".into(),
            profile: "developer".into(),
            admin,
        }
    }

    fn status() -> PolicyStatus {
        PolicyStatus {
            version: "v".into(),
            revision: 4,
            origin: "/srv/secret/policies".into(),
            policies: 3,
            loaded_at_ms: 1,
            reloads: 2,
            failed_reloads: 1,
            last_error: Some("/srv/secret/policies/a.cedar:1:1: bad".into()),
        }
    }

    #[test]
    fn only_admins_see_policy_paths() {
        let seen = serde_json::to_string(&policy_status(status(), &caller(false))).unwrap();
        assert!(!seen.contains("/srv/secret"), "{seen}");
        assert!(
            seen.contains("\"directory\"") && seen.contains("refused"),
            "{seen}"
        );
        let admin = policy_status(status(), &caller(true));
        assert_eq!(admin.origin, "/srv/secret/policies");
        assert!(admin.last_error.unwrap().contains("a.cedar"));
    }
}
