//! RFC 1982 serial number arithmetic: SOA serials wrap around, so "later" is a comparison
//! within half the number space. Shared by the writer's serials, zone transfers and NOTIFY.

/// `a` is before `b`.
pub fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `a` is after `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    serial_lt(b, a)
}

#[cfg(test)]
mod tests;
