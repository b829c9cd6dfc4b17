//! The thread of a sidecar sampler (RSS, bandwidth): started with a stop flag that its
//! body polls, unparked and joined on stop, and stopped the same way when dropped (an
//! error path of collect), so that no sampler outlives the collection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A running sampler thread whose body returns `T`.
pub struct SamplerThread<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> SamplerThread<T> {
    /// Run `body` on a thread named `name`; `body` returns once the flag it is given is
    /// set (it sleeps with `std::thread::park_timeout`, so a stop wakes it at once).
    pub fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(SamplerThread {
            stop,
            thread: Some(thread),
        })
    }
}

impl<T> SamplerThread<T> {
    /// Set the flag, wake the thread and wait for it: what `body` returned, or `None`
    /// when it panicked.
    pub fn stop(mut self) -> Option<T> {
        self.join()
    }

    fn join(&mut self) -> Option<T> {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.take()?;
        t.thread().unpark();
        t.join().ok()
    }
}

impl<T> Drop for SamplerThread<T> {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
