//! Finding the sticky key of a request, independent of how headers are read.

use fledge_core::plugin::StickySource;

/// Read access to request headers; the wasm adapter implements it with hostcalls, tests with a map.
pub trait HeaderSource {
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

/// The first sticky key present, with the index of its source. Reads each header at most once and only
/// until a key is found.
pub fn sticky_key(sources: &[StickySource], headers: &impl HeaderSource) -> Option<(usize, Vec<u8>)> {
    let mut cookies: Option<Option<Vec<u8>>> = None;
    for (i, source) in sources.iter().enumerate() {
        let found = match source {
            StickySource::Header(name) => headers.header(name).filter(|v| !v.is_empty()),
            StickySource::Cookie(name) => {
                let jar = cookies.get_or_insert_with(|| headers.header("cookie"));
                jar.as_deref().and_then(|j| cookie_value(j, name)).map(<[u8]>::to_vec)
            }
        };
        if let Some(v) = found {
            return Some((i, v));
        }
    }
    None
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>, Cell<usize>);
    impl HeaderSource for Map {
        fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.1.set(self.1.get() + 1);
            self.0.get(name).map(|v| v.as_bytes().to_vec())
        }
    }
    fn map(pairs: &[(&'static str, &'static str)]) -> Map {
        Map(pairs.iter().copied().collect(), Cell::new(0))
    }

    fn sources() -> Vec<StickySource> {
        ["header:x-user-id", "cookie:sid", "cookie:uid", "header:x-session-id"]
            .iter()
            .map(|s| StickySource::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn first_present_source_wins() {
        let h = map(&[("x-user-id", "u1"), ("x-session-id", "s1")]);
        assert_eq!(sticky_key(&sources(), &h), Some((0, b"u1".to_vec())));
        assert_eq!(h.1.get(), 1, "stops reading once a key is found");

        let h = map(&[("cookie", "a=1; uid=\"u9\""), ("x-session-id", "s1")]);
        assert_eq!(sticky_key(&sources(), &h), Some((2, b"u9".to_vec())));
        assert_eq!(h.1.get(), 2, "the cookie header is read once for both cookie sources");

        let h = map(&[("x-user-id", ""), ("x-session-id", "s1")]);
        assert_eq!(sticky_key(&sources(), &h), Some((3, b"s1".to_vec())));
        assert_eq!(sticky_key(&sources(), &map(&[])), None);
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value(b"a=1; sid=abc; b=2", "sid"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(b"sidx=1; sid=", "sid"), None);
        assert_eq!(cookie_value(b"garbage;;=;", "sid"), None);
        assert_eq!(cookie_value(b"", "sid"), None);
    }
}
