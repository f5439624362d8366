//! x86_64 syscall names: the table lives in `vigil_api::syscalls`, shared with the sensor.

pub use vigil_api::syscalls::x86_64_name;
