//! Giving freed heap back to the system. Start-up and policy loads parse large inputs (the
//! kernel's BTF, object files) and free them again; glibc keeps freed memory in its arenas, so
//! without this a sensor at rest would keep the peak of its start as resident memory.

/// Returns the free memory at the top of glibc's heaps and in its arenas to the system. Costs a
/// walk of the arenas (well under a millisecond at the sensor's size).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory that is free; it takes no pointers and is
    // safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
