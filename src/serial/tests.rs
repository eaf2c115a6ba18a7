use super::*;

#[test]
fn later_is_within_half_the_number_space_and_wraps() {
    assert!(serial_lt(1, 2));
    assert!(serial_gt(2, 1));
    assert!(!serial_lt(2, 2) && !serial_gt(2, 2));
    assert!(serial_lt(u32::MAX, 0), "0 follows the largest serial");
    assert!(serial_gt(5, u32::MAX - 5));
    assert!(!serial_lt(0, 0x8000_0000) && !serial_gt(0, 0x8000_0000));
}
