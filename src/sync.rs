//! The one import point for locks and atomics.
//!
//! Every module takes its synchronisation primitives from here, so a model
//! checker (loom, shuttle) can be swapped in behind a `cfg` without touching
//! the cache's logic.

pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::Arc;
