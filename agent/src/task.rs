//! Spawning tasks on the runtime.
//!
//! `tokio::spawn` is generic over the future: every spawn site of a distinct future type gets
//! its own copy of tokio's task harness (poll, drop, join, abort and the raw vtable), several
//! KB each at opt-level "z". Boxing the future first leaves one instantiation for the whole
//! agent; the cost is one allocation per task spawned, never per packet.

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;

/// A task's future behind one type.
type Boxed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Spawns `future` on the current runtime, as `tokio::spawn` does.
pub fn spawn<F: Future<Output = ()> + Send + 'static>(future: F) -> JoinHandle<()> {
    spawn_boxed(Box::pin(future))
}

/// The one place `tokio::spawn` is instantiated (kept out of line so each caller's copy of
/// [`spawn`] stays a box and a call).
#[inline(never)]
fn spawn_boxed(future: Boxed) -> JoinHandle<()> {
    tokio::spawn(future)
}
