//! Control actions that need nothing outside the process.

use super::Registry;

pub fn register(registry: &mut Registry) {
    let _ = registry;
}
