//! Locking a `std::sync::Mutex` without `unwrap`.
//!
//! A std mutex is poisoned when a thread panics while holding it. Our
//! critical sections are single map or set operations that leave the data
//! consistent even if interrupted, so the right answer to poisoning is to keep
//! going: failing every later caller would turn one bug into an outage of
//! every socket and request that touches the lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub trait MutexExt<T: ?Sized> {
    /// Lock, recovering the data if a panic poisoned the mutex.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::MutexExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_mutex_still_locks_with_its_data() {
        let m = Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        m.locked().push(2);
        assert_eq!(*m.locked(), vec![1, 2]);
    }
}
