//! Which worker thread runs the current code: the bottom of the tree, so per-worker shards
//! (stats, idle connections) can be picked without reaching up into the server.

thread_local! {
    static WORKER_ID: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker thread running this code (0 outside worker threads).
pub fn worker_id() -> usize {
    WORKER_ID.with(|w| w.get())
}

/// Marks the current thread as worker `id` (called once as each worker thread starts).
pub(crate) fn set_worker_id(id: usize) {
    WORKER_ID.with(|w| w.set(id));
}
