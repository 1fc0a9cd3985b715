//! Relay-style forward pagination shared by every list that grows: `first`/`after`,
//! `pageInfo { hasNextPage endCursor }`. Cursors are opaque (base64url of a row id, whose
//! UUID v7 order is creation order), so a page boundary stays put while new rows arrive.

use async_graphql::SimpleObject;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::ApiError;

/// Page size when `first` is absent.
pub const DEFAULT_PAGE: u64 = 20;
/// Largest `first` accepted.
pub const MAX_PAGE: u64 = 100;

#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Always false: lists page forward only.
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageInfo {
    pub fn new(cursors: &[String], has_next_page: bool) -> Self {
        Self {
            has_next_page,
            has_previous_page: false,
            start_cursor: cursors.first().cloned(),
            end_cursor: cursors.last().cloned(),
        }
    }
}

/// `first`, checked: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_size(first: Option<i32>) -> Result<u64, ApiError> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 1 && (n as u64) <= MAX_PAGE => Ok(n as u64),
        Some(_) => Err(ApiError::bad_input(
            "invalid_page_size",
            format!("first must be between 1 and {MAX_PAGE}"),
        )),
    }
}

/// The cursor of the row with this id.
pub fn cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The row id an `after` cursor names.
pub fn after(cursor: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_input("invalid_cursor", "this cursor is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(after(Some(&cursor(id))).unwrap(), Some(id));
        assert_eq!(after(None).unwrap(), None);
        assert!(after(Some("not a cursor")).is_err());
        assert!(after(Some("AAAA")).is_err());
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(101)).is_err());
        assert_eq!(page_size(Some(100)).unwrap(), 100);
    }
}
