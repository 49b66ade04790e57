//! Percent-decoding (RFC 3986 §2.1) and `application/x-www-form-urlencoded`
//! query components, for the router's query matchers and the API-key and
//! JWT query sources.

use std::borrow::Cow;

/// The value of one hexadecimal digit.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding of one query component:
/// `+` is a space, `%XX` a byte; a malformed escape is kept as it is.
/// Borrowed when there is nothing to decode.
pub(crate) fn decode_form(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|b| matches!(b, b'%' | b'+')) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(&*decode_form(b"a+b%21"), b"a b!");
        assert_eq!(&*decode_form(b"k%2By+z"), b"k+y z");
        assert_eq!(&*decode_form(b"%"), b"%");
        assert_eq!(&*decode_form(b"100%"), b"100%");
        assert_eq!(&*decode_form(b"%4"), b"%4");
        assert_eq!(&*decode_form(b"%zz"), b"%zz");
        assert_eq!(&*decode_form(b"%41%zz%4a%4A"), b"A%zzJJ");
        assert!(matches!(decode_form(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex_value(b'0'), Some(0));
        assert_eq!(hex_value(b'f'), Some(15));
        assert_eq!(hex_value(b'F'), Some(15));
        assert_eq!(hex_value(b'g'), None);
    }
}
