//! API keys. A key is `tg_` followed by 43 characters of unpadded base64url (32 random bytes).
//! It is shown once, when it is created; only its SHA-256 hash is stored, and keys are never
//! logged.
//!
//! A revoked key keeps its row (with `revoked_at_ms`) and authenticates no more. Every
//! revocation also counts one in `key_revocations.generation`, in the same transaction: a
//! process that remembers keys compares that one number to know when to forget them, whoever
//! revoked (this process, or `toolgate keys revoke` next to it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::StoreError;

/// The prefix of every key, so a leaked one is easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "tg_";
const KEY_LEN: usize = KEY_PREFIX.len() + 43;

/// A key just created. `key` is the only copy of the secret: hand it to the caller once.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub principal: String,
    pub profile: String,
    pub admin: bool,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("principal", &self.principal)
            .field("profile", &self.profile)
            .field("admin", &self.admin)
            .finish()
    }
}

/// What a presented key authenticates as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub principal: String,
    pub profile: String,
    pub admin: bool,
    pub created_at_ms: i64,
}

/// A fresh key from 32 bytes of OS randomness.
pub(crate) fn generate() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a key: lowercase hex SHA-256.
pub(crate) fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub(crate) fn insert(
    conn: &Connection,
    principal: &str,
    profile: &str,
    admin: bool,
    created_at_ms: i64,
) -> Result<NewKey, StoreError> {
    let key = generate()?;
    let id = format!("key_{}", uuid::Uuid::new_v4().simple());
    conn.prepare_cached(
        "INSERT INTO api_keys (id, hash, principal, profile, admin, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        hash(&key),
        principal,
        profile,
        admin,
        created_at_ms
    ])?;
    Ok(NewKey {
        id,
        key,
        principal: principal.to_owned(),
        profile: profile.to_owned(),
        admin,
    })
}

/// A key as listed: everything but the secret (of which only a hash is kept anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub principal: String,
    pub profile: String,
    pub admin: bool,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

const INFO_COLUMNS: &str = "id, principal, profile, admin, created_at_ms, revoked_at_ms";

fn info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: row.get(0)?,
        principal: row.get(1)?,
        profile: row.get(2)?,
        admin: row.get(3)?,
        created_at_ms: row.get(4)?,
        revoked_at_ms: row.get(5)?,
    })
}

/// Every key, revoked ones included, oldest first.
pub(crate) fn list(conn: &Connection) -> Result<Vec<KeyInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INFO_COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
    ))?;
    let rows = stmt.query_map([], info_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<KeyInfo>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM api_keys WHERE id = ?1"
        ))?
        .query_row([id], info_from_row)
        .optional()?)
}

/// Revokes key `id` (a key revoked before keeps its first revocation time) and counts the
/// revocation, in one transaction. `None` when there is no such key.
pub(crate) fn revoke(
    conn: &mut Connection,
    id: &str,
    now_ms: i64,
) -> Result<Option<KeyInfo>, StoreError> {
    let tx = conn.transaction()?;
    let revoked = tx
        .prepare_cached(
            "UPDATE api_keys SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
        )?
        .execute(params![id, now_ms])?;
    if revoked > 0 {
        tx.prepare_cached("UPDATE key_revocations SET generation = generation + 1")?
            .execute([])?;
    }
    let info = get(&tx, id)?;
    tx.commit()?;
    Ok(info)
}

/// How many revocations the database has seen.
pub(crate) fn generation(conn: &Connection) -> Result<u64, StoreError> {
    let generation: i64 = conn
        .prepare_cached("SELECT generation FROM key_revocations WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(generation).unwrap_or(0))
}

pub(crate) fn authenticate(
    conn: &Connection,
    presented: &str,
) -> Result<Option<KeyRecord>, StoreError> {
    // Not the shape of a key: no need to look.
    if presented.len() != KEY_LEN || !presented.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(
            "SELECT id, principal, profile, admin, created_at_ms FROM api_keys
             WHERE hash = ?1 AND revoked_at_ms IS NULL",
        )?
        .query_row([hash(presented)], |row| {
            Ok(KeyRecord {
                id: row.get(0)?,
                principal: row.get(1)?,
                profile: row.get(2)?,
                admin: row.get(3)?,
                created_at_ms: row.get(4)?,
            })
        })
        .optional()?)
}

pub(crate) fn count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM api_keys", [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn principals(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT principal, profile FROM api_keys ORDER BY principal, profile",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
