//! A counting global allocator, for test binaries that must show a hostile peer cannot make
//! the library allocate: it tracks the bytes allocated now and the peak since the last
//! [`HeapWatch::start`]. Exact where resident-memory figures are not (freed memory that the
//! C allocator keeps can be reused without raising the RSS).
//!
//! Include it with `#[path = "common/heap.rs"] mod heap;` in the binaries that use it (it
//! installs the global allocator for the whole binary), and run the measuring tests one at
//! a time (`common::serial`): the counts are process-wide.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(by: usize) {
    CURRENT.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every method delegates to the system allocator with the caller's arguments
// unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as the new block arriving before the old one leaves: the peak a
            // moving realloc really reaches.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap's peak growth since [`HeapWatch::start`].
pub struct HeapWatch {
    start: usize,
}

impl HeapWatch {
    /// Starts measuring: the peak is reset to what is allocated now.
    pub fn start() -> HeapWatch {
        let start = CURRENT.load(Ordering::Relaxed);
        PEAK.store(start, Ordering::Relaxed);
        HeapWatch { start }
    }

    /// How far the bytes allocated rose above the start, at most.
    pub fn peak_growth(&self) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(self.start)
    }

    /// Panics if the peak rose by `max` bytes or more.
    pub fn assert_peak_below(&self, max: usize, what: &str) {
        let grew = self.peak_growth();
        eprintln!("{what}: peak heap +{} KiB", grew >> 10);
        assert!(
            grew < max,
            "{what}: the heap grew by {grew} bytes at its peak (limit {max})"
        );
    }
}
