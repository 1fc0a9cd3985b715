//! A bounded cache of parsed GraphQL documents, keyed by query text.
//!
//! Clients send the same few operations over and over; parsing is the largest single cost
//! of a small query (the pest grammar backtracks and allocates per token), while cloning a
//! parsed document only copies its tree (names are shared `Arc<str>`). Only documents that
//! parsed are cached, only up to [`MAX_QUERY_LEN`] bytes, and at most `capacity` of them.
//!
//! The cache also remembers which operations of a document passed full validation. Full
//! validation of a document that declares no variables depends only on its text, the
//! operation name and the schema (fixed for the process), so such a document may skip it on
//! later requests; the depth, complexity and fragment-cycle checks still run every time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::parser::types::ExecutableDocument;

/// Longer queries are parsed every time rather than held in memory.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

struct Entry {
    doc: Arc<ExecutableDocument>,
    /// Operation names (None: the only operation) that passed full validation.
    validated: Vec<Option<String>>,
}

pub struct DocumentCache {
    capacity: usize,
    entries: Mutex<HashMap<Arc<str>, Entry>>,
}

/// A parsed document and whether the requested operation already passed full validation.
pub struct Parsed {
    pub doc: ExecutableDocument,
    pub validated: bool,
}

/// Whether full validation of `doc` can depend on nothing but its text: it declares no
/// variables.
pub fn declares_no_variables(doc: &ExecutableDocument) -> bool {
    doc.operations
        .iter()
        .all(|(_, op)| op.node.variable_definitions.is_empty())
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
    /// The parsed document for `query`, from the cache or freshly parsed, and whether
    /// `operation` of it already passed full validation. `None` when the query does not
    /// parse (the executor then reports the syntax error itself).
    pub fn lookup(&self, query: &str, operation: Option<&str>) -> Option<Parsed> {
        if query.len() > MAX_QUERY_LEN || self.capacity == 0 {
            let doc = async_graphql::parser::parse_query(query).ok()?;
            return Some(Parsed {
                doc,
                validated: false,
            });
        }
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(query)
            .map(|entry| {
                let validated = entry
                    .validated
                    .iter()
                    .any(|name| name.as_deref() == operation);
                (Arc::clone(&entry.doc), validated)
            });
        if let Some((doc, validated)) = cached {
            return Some(Parsed {
                doc: (*doc).clone(),
                validated,
            });
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
        entries.insert(
            Arc::from(query),
            Entry {
                doc: Arc::new(doc.clone()),
                validated: Vec::new(),
            },
        );
        Some(Parsed {
            doc,
            validated: false,
        })
    }

    /// Records that `operation` of the cached `query` passed full validation. Callers only
    /// do so for documents that declare no variables.
    pub fn mark_validated(&self, query: &str, operation: Option<&str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(query)
            && !entry
                .validated
                .iter()
                .any(|name| name.as_deref() == operation)
            && entry.validated.len() < 16
        {
            entry.validated.push(operation.map(str::to_owned));
        }
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
        assert!(cache.lookup("{ a }", None).is_some());
        assert!(cache.lookup("{ a }", None).is_some());
        assert_eq!(cache.len(), 1);
        assert!(cache.lookup("{ broken", None).is_none());
        assert_eq!(cache.len(), 1, "failures are not cached");
        cache.lookup("{ b }", None);
        cache.lookup("{ c }", None);
        assert_eq!(cache.len(), 2, "bounded");
        let long = format!("{{ {} }}", "a ".repeat(MAX_QUERY_LEN));
        assert!(cache.lookup(&long, None).is_some());
        assert_eq!(cache.len(), 2, "long queries are not kept");
    }

    #[test]
    fn validation_is_remembered_per_operation() {
        let cache = DocumentCache::new(8);
        let query = "query A { a } query B { b }";
        assert!(!cache.lookup(query, Some("A")).unwrap().validated);
        cache.mark_validated(query, Some("A"));
        assert!(cache.lookup(query, Some("A")).unwrap().validated);
        assert!(!cache.lookup(query, Some("B")).unwrap().validated);
        assert!(!cache.lookup(query, None).unwrap().validated);
        assert!(declares_no_variables(
            &cache.lookup(query, None).unwrap().doc
        ));
        let with_vars = cache.lookup("query ($x: Int) { a(x: $x) }", None).unwrap();
        assert!(!declares_no_variables(&with_vars.doc));
    }
}
