//! Taking a lock without poisoning: the lock helpers every layer of the
//! core uses. A leaf module (it imports only std).

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn rlock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panicking thread must not take the filesystem down with it; the
    // state under the lock is consistent between statements that matter.
    l.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn wlock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn mlock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}
