//! JSON values in the app's two storages, with the errors a patient can
//! read.

use serde::de::DeserializeOwned;
use serde::Serialize;
use superapp_sdk::prelude::*;

#[cfg(not(feature = "backend"))]
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AppError> {
    serde_json::to_vec(value).map_err(|e| AppError::Failed(format!("cannot encode a record: {e}")))
}

#[cfg(not(feature = "backend"))]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::Failed(format!("a stored record does not read: {e}")))
}

#[cfg(not(feature = "backend"))]
pub fn shared_get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, AppError> {
    shared_storage::get(key)?.map(|b| decode(&b)).transpose()
}

#[cfg(not(feature = "backend"))]
/// Write `value` under `key` only if nothing is there; whether it was.
pub fn shared_create<T: Serialize>(key: &str, value: &T) -> Result<bool, AppError> {
    Ok(shared_storage::compare_and_swap(
        key,
        None,
        Some(&encode(value)?),
    )?)
}

#[cfg(not(feature = "backend"))]
/// Replace exactly `old` by `new` (`None` deletes); whether nobody changed
/// it in between.
pub fn shared_swap<T: Serialize>(key: &str, old: &[u8], new: Option<&T>) -> Result<bool, AppError> {
    let new = new.map(encode).transpose()?;
    Ok(shared_storage::compare_and_swap(
        key,
        Some(old),
        new.as_deref(),
    )?)
}

/// A storage's `list_keys`: prefix, the key to continue after, page size.
type ListKeys = fn(&str, Option<&[u8]>, u32) -> Result<Vec<Vec<u8>>, Error>;

/// Every key under `prefix`, page by page, through `list`.
fn all_keys(list: ListKeys, prefix: &str) -> Result<Vec<String>, AppError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = list(prefix, after.as_deref(), 500)?;
        let Some(last) = page.last().cloned() else {
            return Ok(out);
        };
        out.extend(
            page.into_iter()
                .map(|k| String::from_utf8_lossy(&k).into_owned()),
        );
        after = Some(last);
    }
}

#[cfg(not(feature = "backend"))]
/// Keys under `prefix` in the shared storage.
pub fn shared_keys(prefix: &str) -> Result<Vec<String>, AppError> {
    all_keys(|p, a, l| shared_storage::list_keys(p, a, l), prefix)
}

pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, AppError> {
    Ok(storage::get_json(key)?)
}

pub fn set<T: Serialize>(key: &str, value: &T) -> Result<(), AppError> {
    Ok(storage::set_json(key, value)?)
}

/// Keys under `prefix` in this patient's storage.
pub fn keys(prefix: &str) -> Result<Vec<String>, AppError> {
    all_keys(|p, a, l| storage::list_keys(p, a, l), prefix)
}
