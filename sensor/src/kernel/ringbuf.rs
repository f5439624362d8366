//! The event ring buffer, read with its data pages mapped once.
//!
//! The kernel lets a reader map a ring buffer's data pages twice in a row, so that a record
//! that wraps around the end reads as one piece; aya's reader does that. Every page of both
//! copies is inserted at `mmap` time, so the process's resident size counted the ring buffer
//! twice (16 MB for the default 8 MiB) although the memory is the same. This reader maps the
//! producer page and the data pages once, and copies the (rare) record that wraps into a
//! buffer of its own. The protocol is the kernel's (`kernel/bpf/ringbuf.c`): an 8-byte header
//! per record (length with a busy and a discard bit), records 8-byte aligned, the consumer
//! position published after each record.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence};

use aya::maps::MapData;

use crate::error::SensorError;

const HDR: usize = 8;
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;

/// A shared mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: i32, offset: usize) -> Result<Mapping, String> {
        // SAFETY: a new shared mapping of the map's file descriptor; the kernel checks the length
        // and offset against the ring buffer's pages, and the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or("mmap returned null")?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `new`, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Reads the records of one `BPF_MAP_TYPE_RINGBUF` map.
pub struct RingReader {
    /// `None` only for the tests' readers over plain memory.
    map: Option<MapData>,
    /// What is mapped (unmapped on drop).
    _mappings: Vec<Mapping>,
    /// The consumer page (read-write): the consumer position at offset 0.
    consumer: NonNull<u8>,
    /// The producer page, then the data pages once (read-only).
    producer: NonNull<u8>,
    page: usize,
    /// Bytes of data (a power of two).
    size: usize,
    pos: usize,
    producer_cache: usize,
    /// A record was consumed since the producer position was last read: a fence is due before
    /// concluding the buffer is empty (the kernel wakes a reader only when it sees it caught up).
    needs_wakeup: bool,
    /// A record that wraps around the end, put together.
    wrapped: Vec<u8>,
}

// SAFETY: the mappings are owned by the reader and only read (producer) or written through
// atomics (consumer position); moving the reader to another thread moves them with it.
unsafe impl Send for RingReader {}

impl RingReader {
    pub fn new(map: MapData) -> Result<RingReader, SensorError> {
        let err = |e: String| SensorError::bpf("mapping the ring buffer", e);
        let size = map.info().map_err(|e| err(e.to_string()))?.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !size.is_power_of_two() || size < page {
            return Err(err(format!(
                "data size {size} is not a power-of-two number of pages"
            )));
        }
        let fd = map.fd().as_fd();
        let consumer =
            Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0).map_err(err)?;
        let producer = Mapping::new(fd, page + size, libc::PROT_READ, page).map_err(err)?;
        let (c, p) = (consumer.ptr, producer.ptr);
        let mut r = RingReader::over(c, p, page, size);
        r.map = Some(map);
        r._mappings = vec![consumer, producer];
        Ok(r)
    }

    /// A reader of the ring buffer whose consumer page is at `consumer` and whose producer page
    /// and data pages (`size` bytes) follow each other at `producer`.
    fn over(consumer: NonNull<u8>, producer: NonNull<u8>, page: usize, size: usize) -> Self {
        let mut r = RingReader {
            map: None,
            _mappings: Vec::new(),
            consumer,
            producer,
            page,
            size,
            pos: 0,
            producer_cache: 0,
            needs_wakeup: false,
            wrapped: Vec::new(),
        };
        // A pinned ring buffer (taken over) starts where the previous reader stopped.
        r.pos = r.consumer_pos().load(Ordering::Acquire);
        r.producer_cache = r.pos;
        r
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page is mapped read-write, page-aligned, and holds the kernel's
        // `unsigned long consumer_pos` at offset 0; it lives as long as `self`.
        unsafe { self.consumer.cast::<AtomicUsize>().as_ref() }
    }

    fn producer_pos(&self) -> usize {
        // SAFETY: the producer page (mapped, page-aligned) holds `producer_pos` at offset 0,
        // written by the kernel with release semantics.
        unsafe { self.producer.cast::<AtomicUsize>().as_ref() }.load(Ordering::Acquire)
    }

    /// The data pages.
    fn data(&self) -> *const u8 {
        // SAFETY: the producer mapping is `page + size` bytes long.
        unsafe { self.producer.as_ptr().add(self.page) }
    }

    /// Hands every committed record, in order, to `f`; returns how many. Stops at a record the
    /// kernel is still writing.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let mask = self.size - 1;
        let mut n = 0;
        loop {
            if self.pos == self.producer_cache {
                if self.needs_wakeup {
                    // Either this read sees the kernel's next record, or the kernel sees the
                    // consumer position published below and wakes the poller.
                    fence(Ordering::SeqCst);
                    self.needs_wakeup = false;
                }
                self.producer_cache = self.producer_pos();
                if self.pos == self.producer_cache {
                    break;
                }
            }
            let off = self.pos & mask;
            // SAFETY: `off` is below `size` and 8-aligned, so the 4-byte header is inside the
            // data pages; the kernel commits it with a full barrier, read with Acquire.
            let header =
                unsafe { (*self.data().add(off).cast::<AtomicU32>()).load(Ordering::Acquire) };
            if header & BUSY != 0 {
                if !self.needs_wakeup {
                    break;
                }
                fence(Ordering::SeqCst);
                self.needs_wakeup = false;
                continue;
            }
            let len = ((header & !(BUSY | DISCARD)) as usize).min(self.size - HDR);
            if header & DISCARD == 0 {
                let start = (off + HDR) & mask;
                if start + len <= self.size {
                    // SAFETY: the record lies inside the data pages and is committed (the
                    // kernel does not write it again before the consumer position passes it).
                    f(unsafe { std::slice::from_raw_parts(self.data().add(start), len) });
                } else {
                    let first = self.size - start;
                    self.wrapped.clear();
                    // SAFETY: both parts lie inside the data pages (end of the area, then its
                    // beginning) and are committed, as above.
                    unsafe {
                        self.wrapped.extend_from_slice(std::slice::from_raw_parts(
                            self.data().add(start),
                            first,
                        ));
                        self.wrapped.extend_from_slice(std::slice::from_raw_parts(
                            self.data(),
                            len - first,
                        ));
                    }
                    f(&self.wrapped);
                }
                n += 1;
            }
            self.pos = self.pos.wrapping_add((HDR + len).next_multiple_of(8));
            // Publish after reading: the kernel reuses the space once it sees this.
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.needs_wakeup = true;
        }
        n
    }
}

impl AsFd for RingReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map
            .as_ref()
            .expect("only the tests' readers have no map, and they are not polled")
            .fd()
            .as_fd()
    }
}

impl AsRawFd for RingReader {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 64;
    const SIZE: usize = 64;

    /// A ring buffer in plain memory: the consumer page, then the producer page and the data.
    struct FakeRing {
        consumer: Vec<u64>,
        producer: Vec<u64>,
        /// Where the kernel would reserve next.
        next: usize,
    }

    impl FakeRing {
        fn new(start: usize) -> FakeRing {
            let mut r = FakeRing {
                consumer: vec![0; PAGE / 8],
                producer: vec![0; (PAGE + SIZE) / 8],
                next: start,
            };
            r.consumer[0] = start as u64;
            r.producer[0] = start as u64;
            r
        }

        fn reader(&mut self) -> RingReader {
            RingReader::over(
                NonNull::new(self.consumer.as_mut_ptr().cast()).unwrap(),
                NonNull::new(self.producer.as_mut_ptr().cast()).unwrap(),
                PAGE,
                SIZE,
            )
        }

        fn data(&mut self) -> &mut [u8] {
            let bytes: &mut [u8] = bytemuck_bytes(&mut self.producer);
            &mut bytes[PAGE..]
        }

        /// Writes a record (header flags `flags`) the way the kernel lays it out, and
        /// publishes it unless `flags` has the busy bit.
        fn push(&mut self, payload: &[u8], flags: u32) -> usize {
            let at = self.next;
            let header = (payload.len() as u32 | flags).to_ne_bytes();
            let off = at & (SIZE - 1);
            self.data()[off..off + 4].copy_from_slice(&header);
            for (i, b) in payload.iter().enumerate() {
                let o = (at + HDR + i) & (SIZE - 1);
                self.data()[o] = *b;
            }
            self.next = at + (HDR + payload.len()).next_multiple_of(8);
            self.producer[0] = self.next as u64;
            at
        }

        fn set_header(&mut self, at: usize, len: usize, flags: u32) {
            let off = at & (SIZE - 1);
            let header = (len as u32 | flags).to_ne_bytes();
            self.data()[off..off + 4].copy_from_slice(&header);
        }
    }

    fn bytemuck_bytes(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: u64 memory viewed as bytes, same length in bytes, exclusive borrow.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len() * 8) }
    }

    fn drain_all(r: &mut RingReader) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        r.drain(|b| out.push(b.to_vec()));
        out
    }

    #[test]
    fn records_come_in_order_and_the_consumer_position_follows() {
        let mut ring = FakeRing::new(0);
        ring.push(b"abc", 0);
        ring.push(b"0123456789", 0);
        let mut r = ring.reader();
        assert_eq!(
            drain_all(&mut r),
            vec![b"abc".to_vec(), b"0123456789".to_vec()]
        );
        // 8 + 3 → 16, 8 + 10 → 24.
        assert_eq!(ring.consumer[0], 40);
        assert!(drain_all(&mut r).is_empty());
    }

    #[test]
    fn a_record_that_wraps_around_the_end_is_put_together() {
        // Start 16 bytes before the end: the header fits, the payload wraps.
        let mut ring = FakeRing::new(1000 * SIZE + SIZE - 16);
        let payload: Vec<u8> = (1..=20).collect();
        ring.push(&payload, 0);
        ring.push(b"after", 0);
        let mut r = ring.reader();
        assert_eq!(drain_all(&mut r), vec![payload, b"after".to_vec()]);
        assert_eq!(ring.consumer[0] as usize, ring.next);
    }

    #[test]
    fn discarded_records_are_skipped_and_a_busy_one_stops_the_drain() {
        let mut ring = FakeRing::new(0);
        ring.push(b"dropped", DISCARD);
        let busy = ring.push(b"later", BUSY);
        let mut r = ring.reader();
        assert!(drain_all(&mut r).is_empty());
        // Stopped at the busy record, past the discarded one.
        assert_eq!(ring.consumer[0] as usize, busy);
        ring.set_header(busy, 5, 0);
        assert_eq!(drain_all(&mut r), vec![b"later".to_vec()]);
        assert_eq!(ring.consumer[0] as usize, ring.next);
    }
}
