//! # shardcache
//!
//! An embeddable, in-process cache with Redis's semantics.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod cache;
mod clock;
mod compute;
mod error;
mod expiry;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod listener;
mod loader;
mod policy;
mod shard;
mod slab;
mod stats;
mod sync;
mod weigher;

pub use builder::{CacheBuilder, MAX_TTL_DAYS};
pub use cache::{Cache, Iter};
pub use compute::{Current, Decision, Ttl};
pub use clock::{Clock, MockClock, SystemClock};
pub use error::{BuildError, CapacityError, Error, Result};
pub use hash::DefaultHashBuilder;
pub use listener::{Listener, RemovalCause};
pub use policy::{Policy, UnknownPolicy};
pub use stats::CacheStats;
pub use weigher::Weigher;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
