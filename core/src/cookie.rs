//! Reading one cookie out of a `Cookie` header, robustly: several cookies, spaces, quoted values,
//! duplicates (the first non-empty one wins, as RFC 6265 advises servers) and junk never fail.

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`); empty values count as absent.
pub fn cookie_value<'a>(jar: &'a [u8], name: &str) -> Option<&'a [u8]> {
    jar.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (k, v) = pair.split_at(eq);
        let v = v.get(1..)?.trim_ascii();
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
        (k.trim_ascii() == name.as_bytes() && !v.is_empty()).then_some(v)
    })
}

/// RFC 9110 token characters: what a header or cookie name may contain.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_parsing() {
        assert_eq!(cookie_value(b"a=1; sid=abc; b=2", "sid"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(b"sidx=1; sid=", "sid"), None);
        assert_eq!(cookie_value(b"garbage;;=;", "sid"), None);
        assert_eq!(cookie_value(b"", "sid"), None);
        assert_eq!(cookie_value(b"  sid = \"q1\" ;x=2", "sid"), Some(&b"q1"[..]), "spaces and quotes");
        assert_eq!(cookie_value(b"sid=first; sid=second", "sid"), Some(&b"first"[..]), "duplicates: the first");
        assert_eq!(cookie_value(b"sid=; sid=second", "sid"), Some(&b"second"[..]), "an empty duplicate is skipped");
        assert_eq!(cookie_value(b"\xff\xfe=\x00; sid=k\xc3", "sid"), Some(&b"k\xc3"[..]), "non-UTF-8 junk");
        assert_eq!(cookie_value(b"sid", "sid"), None);
        assert_eq!(cookie_value(b"=sid; sid\"=x", "sid"), None);
        assert_eq!(cookie_value(b"SID=x", "sid"), None, "names are case-sensitive");
    }
}
