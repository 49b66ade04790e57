//! Decimal text without the formatting machinery, for header values built
//! on hot paths.

/// Writes the decimal digits of `n` at the end of `buf` (20 bytes hold any
/// `u64`) and returns them.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `n % 10` is a single digit.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn digits_match_the_formatter() {
        for n in [0, 7, 10, 99, 1_000, 4_294_967_296, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes(), "{n}");
        }
    }
}
