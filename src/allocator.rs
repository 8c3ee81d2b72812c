//! The allocator's settings, built in: mimalloc commits its arenas as they
//! are used and returns freed memory to the system at once, instead of
//! keeping it resident for later. A burst then leaves the process near the
//! memory its work needs. The environment still decides where it says
//! otherwise (`MIMALLOC_ARENA_EAGER_COMMIT`, `MIMALLOC_PURGE_DELAY`).

use std::os::raw::{c_int, c_long};

/// mimalloc's option numbers (`mi_option_e` in the `mimalloc.h` that
/// `libmimalloc-sys` builds: version 3).
const ARENA_EAGER_COMMIT: c_int = 4;
const PURGE_DELAY: c_int = 15;

/// The options set here, with their values and the variable that overrides each.
const DEFAULTS: [(c_int, c_long, &str); 2] = [
    (ARENA_EAGER_COMMIT, 0, "MIMALLOC_ARENA_EAGER_COMMIT"),
    (PURGE_DELAY, 0, "MIMALLOC_PURGE_DELAY"),
];

/// Sets the built-in defaults; call it first thing in `main`, before any
/// thread starts.
pub fn tune() {
    for (option, value, variable) in DEFAULTS {
        if std::env::var_os(variable).is_none() {
            set(option, value);
        }
    }
}

#[allow(unsafe_code)]
fn set(option: c_int, value: c_long) {
    // SAFETY: `mi_option_set` stores a value in mimalloc's table of
    // options; any option number below `_mi_option_last` is valid, and
    // both are.
    unsafe { libmimalloc_sys::mi_option_set(option, value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn get(option: c_int) -> c_long {
        // SAFETY: reads mimalloc's table of options (a valid number).
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_numbers_name_the_options_meant() {
        // mimalloc 3's defaults: eager commit 2 (on systems that
        // overcommit), purge delay 1000 ms, unless set before this test.
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none()
            && std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        {
            assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (2, 1000));
        }
        set(PURGE_DELAY, 0);
        assert_eq!(get(PURGE_DELAY), 0);
    }
}
