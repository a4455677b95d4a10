//! Time for the simulated cluster: the wall clock, or a virtual clock whose waits fast-forward so
//! scenarios with long pauses run instantly. Everything in the simulator that stamps or waits
//! goes through one shared `Clock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    virtual_mode: bool,
    /// Virtual time is wall time plus this many nanoseconds.
    offset_nanos: AtomicI64,
}

impl Clock {
    pub fn wall() -> Clock {
        Clock { inner: Arc::new(Inner { virtual_mode: false, offset_nanos: AtomicI64::new(0) }) }
    }

    pub fn virtual_clock() -> Clock {
        Clock { inner: Arc::new(Inner { virtual_mode: true, offset_nanos: AtomicI64::new(0) }) }
    }

    pub fn is_virtual(&self) -> bool {
        self.inner.virtual_mode
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::nanoseconds(self.inner.offset_nanos.load(Ordering::Relaxed))
    }

    /// Waits `d`: really on the wall clock; on the virtual clock time jumps forward by `d` and
    /// the caller only yields.
    pub async fn sleep(&self, d: Duration) {
        if self.inner.virtual_mode {
            let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            self.inner.offset_nanos.fetch_add(nanos, Ordering::Relaxed);
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(d).await;
        }
    }
}
