//! The example binaries' global allocator: mimalloc, asked the cheapest
//! way for each request.
//!
//! `mimalloc::MiMalloc` passes every allocation to `mi_malloc_aligned`,
//! whose fast path only takes blocks of at most 1 KiB that happen to be
//! aligned; the rest (the larger futures a proxied request boxes) go
//! through mimalloc's generic aligned path, which over-allocates: about
//! 190 more instructions each, six times per request (callgrind). Like
//! the standard library's `System` allocator, this asks for plain
//! `mi_malloc` when the alignment is one every mimalloc block has (a
//! word), and for an aligned block only when more is needed.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned};
use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};

/// Every mimalloc block is aligned to at least a machine word.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, plain or aligned by the layout's alignment.
#[derive(Debug)]
pub(crate) struct Allocator;

// SAFETY: each method passes the layout's size (and alignment when it is
// more than the word every block has) to the matching mimalloc function,
// which returns null or a block of at least that size and alignment, and
// frees with `mi_free`, which takes blocks from any of them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: see the impl.
            unsafe { mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: see the impl; `Layout` guarantees a power of two.
            unsafe { mi_malloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: see the impl.
            unsafe { mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: see the impl.
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()).cast() }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: `ptr` came from this allocator with `layout`.
            unsafe { mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: as above, keeping the alignment.
            unsafe { mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast() }
        }
    }
}
