//! [`GraphState`]: a per-run key/value store of JSON values shared by every node of the run.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};

/// A per-run key/value store of JSON values, reachable from every node through
/// [`Context::state`](crate::Context::state).
///
/// Every operation takes one short lock, so concurrent long-running workers never lose an
/// update; [`update_with`](Self::update_with) and [`transaction`](Self::transaction) are atomic
/// read-modify-writes. Cloning shares the store.
///
/// # Example
///
/// ```
/// use spark_adk_core::GraphState;
/// use serde_json::json;
///
/// let state = GraphState::default();
/// state.set("count", json!(1));
/// let next = state.update_with("count", |v| {
///     *v = json!(v.as_i64().unwrap_or(0) + 1);
///     v.clone()
/// });
/// assert_eq!(next, json!(2));
/// assert_eq!(state.get("count"), Some(json!(2)));
/// ```
#[derive(Clone, Default)]
pub struct GraphState {
    inner: Arc<Mutex<Map<String, Value>>>,
    /// The keys written since the last [`GraphState::take_writes`]: kept only for durable runs
    /// (see [`GraphState::with_write_log`]); `None`, and free, otherwise.
    writes: Option<Arc<Mutex<Vec<String>>>>,
}

impl fmt::Debug for GraphState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GraphState").field(&*self.lock()).finish()
    }
}

impl GraphState {
    /// A store holding `initial`.
    pub fn new(initial: Map<String, Value>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(initial)),
            writes: None,
        }
    }

    /// A store holding `initial` that remembers which keys are written (set, removed, updated),
    /// for an executor that logs each activation's state changes (durable runs). Read and clear
    /// the written keys with [`GraphState::take_writes`].
    pub fn with_write_log(initial: Map<String, Value>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(initial)),
            writes: Some(Arc::new(Mutex::new(Vec::new()))),
        }
    }

    /// The keys written since the last call, each once, in the order first written; empty when
    /// the store keeps no write log. Each key's current value is what was written last.
    pub fn take_writes(&self) -> Vec<String> {
        let Some(writes) = &self.writes else {
            return Vec::new();
        };
        let mut keys = std::mem::take(&mut *writes.lock().unwrap_or_else(PoisonError::into_inner));
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        keys.retain(|k| seen.insert(k.clone()));
        keys
    }

    /// The current values of `keys` (`None` for a removed key), read under one lock.
    pub fn values_of(&self, keys: &[String]) -> Vec<Option<Value>> {
        let map = self.lock();
        keys.iter().map(|k| map.get(k).cloned()).collect()
    }

    #[inline]
    fn wrote<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        if let Some(writes) = &self.writes {
            let mut w = writes.lock().unwrap_or_else(PoisonError::into_inner);
            w.extend(keys.into_iter().map(str::to_owned));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map<String, Value>> {
        // User closures run on a copy (`update_with`, `transaction`), so a panic inside one
        // never leaves the map half-written: a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the value at `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lock().get(key).cloned()
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let mut map = self.lock();
        self.wrote([key.as_str()]);
        map.insert(key, value.into())
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut map = self.lock();
        self.wrote([key]);
        map.remove(key)
    }

    /// Sets several keys at once, atomically.
    pub fn update<K: Into<String>, V: Into<Value>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) {
        let mut map = self.lock();
        for (k, v) in entries {
            let k = k.into();
            self.wrote([k.as_str()]);
            map.insert(k, v.into());
        }
    }

    /// Atomic read-modify-write of one key (a missing key starts as `null`); returns what `f`
    /// returns.
    ///
    /// `f` works on a copy of the value, written back when `f` returns: if `f` panics the store
    /// is unchanged (the panic goes on to the caller; in a node, it is the node's panic).
    pub fn update_with<R>(&self, key: &str, f: impl FnOnce(&mut Value) -> R) -> R {
        let mut map = self.lock();
        let mut value = map.get(key).cloned().unwrap_or(Value::Null);
        let result = f(&mut value);
        self.wrote([key]);
        match map.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                map.insert(key.to_owned(), value);
            }
        }
        result
    }

    /// Atomic read-modify-write of the whole store.
    ///
    /// `f` works on a copy of the store, which replaces it when `f` returns: if `f` panics the
    /// store is unchanged (the panic goes on to the caller; in a node, it is the node's panic).
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        let mut map = self.lock();
        let mut draft = map.clone();
        let result = f(&mut draft);
        if self.writes.is_some() {
            // Only durable runs pay for finding what the transaction changed.
            let changed: Vec<&str> = map
                .iter()
                .filter(|(k, v)| draft.get(*k) != Some(*v))
                .map(|(k, _)| k.as_str())
                .chain(
                    draft
                        .iter()
                        .filter(|(k, _)| !map.contains_key(*k))
                        .map(|(k, _)| k.as_str()),
                )
                .collect();
            self.wrote(changed);
        }
        *map = draft;
        result
    }

    /// A copy of the whole store.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.lock().clone()
    }

    /// `true` when both handles share one store.
    pub fn shares_with(&self, other: &GraphState) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_write_log_names_each_written_key_once_in_first_write_order() {
        let mut initial = Map::new();
        initial.insert("keep".to_owned(), json!(1));
        initial.insert("gone".to_owned(), json!(2));
        let state = GraphState::with_write_log(initial);
        state.set("b", json!(1));
        state.remove("gone");
        state.update_with("a", |v| *v = json!(3));
        state.set("b", json!(2));
        state.transaction(|m| {
            m.insert("t".to_owned(), json!(true));
            m.insert("keep".to_owned(), json!(1)); // unchanged: not a write
        });
        assert_eq!(state.take_writes(), ["b", "gone", "a", "t"]);
        assert!(
            state.take_writes().is_empty(),
            "taking the writes clears them"
        );
        assert_eq!(
            state.values_of(&["b".to_owned(), "gone".to_owned()]),
            [Some(json!(2)), None]
        );
    }

    #[test]
    fn a_state_without_a_write_log_reports_no_writes() {
        let state = GraphState::default();
        state.set("a", json!(1));
        assert!(state.take_writes().is_empty());
    }

    #[test]
    fn concurrent_increments_are_never_lost() {
        let state = GraphState::default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = state.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.update_with("n", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(state.get("n"), Some(json!(8000)));
    }

    fn panics<R>(f: impl FnOnce() -> R) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_inside_a_transaction_leaves_the_state_unchanged() {
        let state = GraphState::default();
        state.set("kept", json!(1));
        assert!(panics(|| state.transaction(|map| {
            map.insert("kept".into(), json!(2));
            map.insert("partial".into(), json!(true));
            panic!("half-way");
        })));
        assert_eq!(state.get("kept"), Some(json!(1)));
        assert_eq!(state.get("partial"), None);
        // The store is still usable after the panic.
        state.transaction(|map| map.insert("after".into(), json!(3)));
        assert_eq!(state.get("after"), Some(json!(3)));
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_inside_update_with_leaves_the_state_unchanged() {
        let state = GraphState::default();
        state.set("n", json!([1]));
        assert!(panics(|| state.update_with("n", |v| {
            if let Some(list) = v.as_array_mut() {
                list.push(json!(2));
            }
            panic!("half-way");
        })));
        assert!(panics(|| state.update_with("missing", |v| {
            *v = json!("written");
            panic!("half-way");
        })));
        assert_eq!(state.get("n"), Some(json!([1])));
        assert_eq!(state.get("missing"), None);
    }

    #[test]
    fn update_sets_several_keys() {
        let state = GraphState::default();
        state.update([("a", json!(1)), ("b", json!(2))]);
        assert_eq!(
            state.snapshot(),
            json!({"a": 1, "b": 2})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
    }
}
