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
    inner: Store,
    /// The keys written since the last [`GraphState::take_writes`]: kept only for durable runs
    /// (see [`GraphState::with_write_log`]); `None`, and free, otherwise.
    writes: Option<Arc<Mutex<Vec<String>>>>,
}

/// Where the values are: the in-process map (every run but a distributed one), or a
/// [`StateBackend`]. Matched once per operation.
#[derive(Clone)]
enum Store {
    Local(Arc<Mutex<Map<String, Value>>>),
    Backend(Arc<dyn StateBackend>),
}

impl Default for Store {
    fn default() -> Self {
        Store::Local(Arc::default())
    }
}

/// Where a [`GraphState`] keeps its values when they are not in this process's memory: for
/// example a distributed run's key-value bucket on a broker, shared by every process of the
/// run (`spark-adk-nats`). Build the state with [`GraphState::with_backend`]; node code does
/// not change.
///
/// The methods are synchronous, like `GraphState`'s: a backend that talks to a server blocks
/// the calling thread until it has the answer (it must not need the caller's async runtime to
/// make progress, which may be a current-thread runtime blocked in this very call).
///
/// # Errors
///
/// The methods return no `Result`, as `GraphState`'s do not. A backend that fails returns
/// what its documentation says (for example `None`), records the failure, and whoever built
/// it reports it (the distributed runtime turns it into the node's error after the
/// activation). It never loses a failure silently.
///
/// # Atomicity
///
/// [`begin_update`](Self::begin_update) and [`begin_transaction`](Self::begin_transaction)
/// are atomic read-modify-writes across everyone sharing the backend. `GraphState` hands its
/// caller's closure (a `FnOnce`) the value they read and runs it once, so compare-and-set with
/// retries (which re-runs the closure) cannot do: a backend holds off other writers (for
/// example with a lock) from the read to the [`StateWrite::commit`]. When the closure panics
/// the [`StateWrite`] is dropped without a commit: the backend writes nothing and releases
/// what it holds.
pub trait StateBackend: Send + Sync + fmt::Debug {
    /// A copy of the value at `key`.
    fn get(&self, key: &str) -> Option<Value>;
    /// Sets `key` to `value`; returns the previous value.
    fn set(&self, key: &str, value: Value) -> Option<Value>;
    /// Removes `key`; returns its value.
    fn remove(&self, key: &str) -> Option<Value>;
    /// Sets several keys at once, atomically with respect to other writers.
    fn update(&self, entries: Vec<(String, Value)>);
    /// Begins an atomic read-modify-write of `key`: the returned write holds the current
    /// value (`null` when missing, or when it could not be read: a recorded failure whose
    /// commit writes nothing) until it is committed or dropped.
    fn begin_update(&self, key: &str) -> Box<dyn StateWrite<Value> + '_>;
    /// Begins an atomic read-modify-write of the whole store: the returned write holds a copy
    /// of the store (empty when it could not be read: a recorded failure whose commit writes
    /// nothing); its commit makes the store what the copy became.
    fn begin_transaction(&self) -> Box<dyn StateWrite<Map<String, Value>> + '_>;
    /// A copy of the whole store.
    fn snapshot(&self) -> Map<String, Value>;
}

/// A read-modify-write in progress on a [`StateBackend`] (see
/// [`StateBackend::begin_update`]): other writers are held off until it is committed or
/// dropped.
pub trait StateWrite<T> {
    /// The value read, to modify in place.
    fn value(&mut self) -> &mut T;
    /// Writes the (modified) value and releases the hold. Dropping the write without a commit
    /// releases the hold and writes nothing.
    fn commit(self: Box<Self>);
}

impl fmt::Debug for GraphState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Store::Local(map) => f.debug_tuple("GraphState").field(&*lock(map)).finish(),
            Store::Backend(backend) => f.debug_tuple("GraphState").field(backend).finish(),
        }
    }
}

impl GraphState {
    /// A store holding `initial`.
    pub fn new(initial: Map<String, Value>) -> Self {
        Self {
            inner: Store::Local(Arc::new(Mutex::new(initial))),
            writes: None,
        }
    }

    /// A store whose values live in `backend` (for example a distributed run's bucket on a
    /// broker) rather than in this process. Every method goes to the backend; the values a
    /// method returns when the backend fails are the backend's to document (see
    /// [`StateBackend`]). Such a store keeps no write log.
    pub fn with_backend(backend: Arc<dyn StateBackend>) -> Self {
        Self {
            inner: Store::Backend(backend),
            writes: None,
        }
    }

    /// The backend the values live in; `None` for the in-process map.
    pub fn backend(&self) -> Option<&Arc<dyn StateBackend>> {
        match &self.inner {
            Store::Local(_) => None,
            Store::Backend(backend) => Some(backend),
        }
    }

    /// A store holding `initial` that remembers which keys are written (set, removed, updated),
    /// for an executor that logs each activation's state changes (durable runs). Read and clear
    /// the written keys with [`GraphState::take_writes`].
    pub fn with_write_log(initial: Map<String, Value>) -> Self {
        Self {
            inner: Store::Local(Arc::new(Mutex::new(initial))),
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

    /// The current values of `keys` (`None` for a removed key), read under one lock (with a
    /// backend: one read per key).
    pub fn values_of(&self, keys: &[String]) -> Vec<Option<Value>> {
        match &self.inner {
            Store::Local(map) => {
                let map = lock(map);
                keys.iter().map(|k| map.get(k).cloned()).collect()
            }
            Store::Backend(backend) => keys.iter().map(|k| backend.get(k)).collect(),
        }
    }

    #[inline]
    fn wrote<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        if let Some(writes) = &self.writes {
            let mut w = writes.lock().unwrap_or_else(PoisonError::into_inner);
            w.extend(keys.into_iter().map(str::to_owned));
        }
    }

    /// A copy of the value at `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        match &self.inner {
            Store::Local(map) => lock(map).get(key).cloned(),
            Store::Backend(backend) => backend.get(key),
        }
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        match &self.inner {
            Store::Local(map) => {
                let mut map = lock(map);
                self.wrote([key.as_str()]);
                map.insert(key, value.into())
            }
            Store::Backend(backend) => backend.set(&key, value.into()),
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        match &self.inner {
            Store::Local(map) => {
                let mut map = lock(map);
                self.wrote([key]);
                map.remove(key)
            }
            Store::Backend(backend) => backend.remove(key),
        }
    }

    /// Sets several keys at once, atomically.
    pub fn update<K: Into<String>, V: Into<Value>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) {
        match &self.inner {
            Store::Local(map) => {
                let mut map = lock(map);
                for (k, v) in entries {
                    let k = k.into();
                    self.wrote([k.as_str()]);
                    map.insert(k, v.into());
                }
            }
            Store::Backend(backend) => backend.update(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// Atomic read-modify-write of one key (a missing key starts as `null`); returns what `f`
    /// returns.
    ///
    /// `f` works on a copy of the value, written back when `f` returns: if `f` panics the store
    /// is unchanged (the panic goes on to the caller; in a node, it is the node's panic).
    ///
    /// With a [backend](Self::with_backend) that fails to read the value, `f` runs on `null`
    /// and nothing is written (the backend records the failure); other writers are held off
    /// while `f` runs (see [`StateBackend`]).
    pub fn update_with<R>(&self, key: &str, f: impl FnOnce(&mut Value) -> R) -> R {
        let map = match &self.inner {
            Store::Local(map) => map,
            Store::Backend(backend) => {
                let mut write = backend.begin_update(key);
                let result = f(write.value());
                write.commit();
                return result;
            }
        };
        let mut map = lock(map);
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
    ///
    /// With a [backend](Self::with_backend) that fails to read the store, `f` runs on an empty
    /// map and nothing is written (the backend records the failure).
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        let map = match &self.inner {
            Store::Local(map) => map,
            Store::Backend(backend) => {
                let mut write = backend.begin_transaction();
                let result = f(write.value());
                write.commit();
                return result;
            }
        };
        let mut map = lock(map);
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
        match &self.inner {
            Store::Local(map) => lock(map).clone(),
            Store::Backend(backend) => backend.snapshot(),
        }
    }

    /// `true` when both handles share one store (the same map, or the same backend).
    pub fn shares_with(&self, other: &GraphState) -> bool {
        match (&self.inner, &other.inner) {
            (Store::Local(a), Store::Local(b)) => Arc::ptr_eq(a, b),
            (Store::Backend(a), Store::Backend(b)) => {
                std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
            }
            _ => false,
        }
    }
}

fn lock(map: &Mutex<Map<String, Value>>) -> MutexGuard<'_, Map<String, Value>> {
    // User closures run on a copy (`update_with`, `transaction`), so a panic inside one
    // never leaves the map half-written: a poisoned lock is still usable.
    map.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// A backend over a shared map that holds a lock from `begin_*` to commit or drop, and
    /// counts commits and releases.
    #[derive(Debug, Default)]
    struct Recording {
        map: Mutex<Map<String, Value>>,
        commits: std::sync::atomic::AtomicUsize,
        released: std::sync::atomic::AtomicUsize,
    }

    struct Held<'a, T> {
        backend: &'a Recording,
        key: Option<String>,
        value: T,
    }

    impl<T> Drop for Held<'_, T> {
        fn drop(&mut self) {
            self.backend
                .released
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl StateWrite<Value> for Held<'_, Value> {
        fn value(&mut self) -> &mut Value {
            &mut self.value
        }
        fn commit(self: Box<Self>) {
            let key = self.key.clone().unwrap_or_default();
            lock(&self.backend.map).insert(key, self.value.clone());
            self.backend
                .commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl StateWrite<Map<String, Value>> for Held<'_, Map<String, Value>> {
        fn value(&mut self) -> &mut Map<String, Value> {
            &mut self.value
        }
        fn commit(self: Box<Self>) {
            *lock(&self.backend.map) = self.value.clone();
            self.backend
                .commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl StateBackend for Recording {
        fn get(&self, key: &str) -> Option<Value> {
            lock(&self.map).get(key).cloned()
        }
        fn set(&self, key: &str, value: Value) -> Option<Value> {
            lock(&self.map).insert(key.to_owned(), value)
        }
        fn remove(&self, key: &str) -> Option<Value> {
            lock(&self.map).remove(key)
        }
        fn update(&self, entries: Vec<(String, Value)>) {
            lock(&self.map).extend(entries);
        }
        fn begin_update(&self, key: &str) -> Box<dyn StateWrite<Value> + '_> {
            Box::new(Held {
                backend: self,
                key: Some(key.to_owned()),
                value: self.get(key).unwrap_or(Value::Null),
            })
        }
        fn begin_transaction(&self) -> Box<dyn StateWrite<Map<String, Value>> + '_> {
            Box::new(Held {
                backend: self,
                key: None,
                value: self.snapshot(),
            })
        }
        fn snapshot(&self) -> Map<String, Value> {
            lock(&self.map).clone()
        }
    }

    #[test]
    fn a_state_with_a_backend_reads_and_writes_the_backend() {
        let backend = Arc::new(Recording::default());
        let state = GraphState::with_backend(backend.clone());
        assert_eq!(state.set("a", json!(1)), None);
        assert_eq!(state.set("a", json!(2)), Some(json!(1)));
        state.update([("b", json!(true))]);
        let next = state.update_with("n", |v| {
            *v = json!(v.as_i64().unwrap_or(0) + 5);
            v.clone()
        });
        assert_eq!(next, json!(5));
        let keys = state.transaction(|m| {
            m.remove("b");
            m.len()
        });
        assert_eq!(keys, 2);
        assert_eq!(state.remove("a"), Some(json!(2)));
        assert_eq!(state.get("n"), Some(json!(5)));
        assert_eq!(
            state.values_of(&["n".to_owned(), "b".to_owned()]),
            [Some(json!(5)), None]
        );
        let stored = lock(&backend.map).clone();
        assert_eq!(stored, state.snapshot());
        assert_eq!(state.snapshot().len(), 1);
        assert_eq!(backend.commits.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(state.shares_with(&state.clone()));
        assert!(!state.shares_with(&GraphState::with_backend(Arc::new(Recording::default()))));
        assert!(!state.shares_with(&GraphState::default()));
        assert!(state.backend().is_some() && GraphState::default().backend().is_none());
        assert!(
            state.take_writes().is_empty(),
            "a backed state keeps no write log"
        );
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_inside_update_with_on_a_backend_releases_the_hold_and_writes_nothing() {
        let backend = Arc::new(Recording::default());
        let state = GraphState::with_backend(backend.clone());
        state.set("n", json!(1));
        assert!(panics(|| state.update_with("n", |v| {
            *v = json!(2);
            panic!("half-way");
        })));
        assert!(panics(|| state.transaction(|m| {
            m.insert("t".into(), json!(true));
            panic!("half-way");
        })));
        assert_eq!(state.get("n"), Some(json!(1)));
        assert_eq!(state.get("t"), None);
        assert_eq!(backend.commits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(
            backend.released.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }
}
