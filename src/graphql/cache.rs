//! A bounded cache of parsed GraphQL documents, keyed by query text.
//!
//! Clients send the same few operations over and over; parsing is the largest single cost
//! of a small query (the pest grammar backtracks and allocates per token), while cloning a
//! parsed document only copies its tree (names are shared `Arc<str>`). Only documents that
//! parsed are cached, only up to [`MAX_QUERY_LEN`] bytes, and at most `capacity` of them;
//! validation still runs on every request, so a cached document grants nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::parser::types::ExecutableDocument;

/// Longer queries are parsed every time rather than held in memory.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

pub struct DocumentCache {
    capacity: usize,
    entries: Mutex<HashMap<Arc<str>, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
        }
    }

    /// The parsed document for `query`, from the cache or freshly parsed. `None` when the
    /// query does not parse (the executor then reports the syntax error itself).
    pub fn get_or_parse(&self, query: &str) -> Option<ExecutableDocument> {
        if query.len() > MAX_QUERY_LEN || self.capacity == 0 {
            return async_graphql::parser::parse_query(query).ok();
        }
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(query)
            .cloned();
        if let Some(doc) = cached {
            return Some((*doc).clone());
        }
        let doc = async_graphql::parser::parse_query(query).ok()?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            // Evict an arbitrary entry: cheap, bounded, and good enough for a working set
            // that is much smaller than the capacity.
            if let Some(key) = entries.keys().next().cloned() {
                entries.remove(&key);
            }
        }
        entries.insert(Arc::from(query), Arc::new(doc.clone()));
        Some(doc)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_parsed_documents_within_bounds() {
        let cache = DocumentCache::new(2);
        assert!(cache.get_or_parse("{ a }").is_some());
        assert!(cache.get_or_parse("{ a }").is_some());
        assert_eq!(cache.len(), 1);
        assert!(cache.get_or_parse("{ broken").is_none());
        assert_eq!(cache.len(), 1, "failures are not cached");
        cache.get_or_parse("{ b }");
        cache.get_or_parse("{ c }");
        assert_eq!(cache.len(), 2, "bounded");
        let long = format!("{{ {} }}", "a ".repeat(MAX_QUERY_LEN));
        assert!(cache.get_or_parse(&long).is_some());
        assert_eq!(cache.len(), 2, "long queries are not kept");
    }
}
