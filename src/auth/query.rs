//! Reading and removing one query parameter (API keys, tokens).

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

use crate::percent::decode_form as decode;

/// The decoded value of the first parameter called `name` in `query`.
pub(crate) fn find<'q>(query: &'q str, name: &str) -> Option<Cow<'q, [u8]>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key.as_bytes()).as_ref() == name.as_bytes()).then(|| decode(value.as_bytes()))
    })
}

/// `uri` without any parameter called `name`, or `None` when it has none.
pub(crate) fn without(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let mut removed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            let hit = decode(key.as_bytes()).as_ref() == name.as_bytes();
            removed |= hit;
            !hit
        })
        .collect();
    if !removed {
        return None;
    }
    let mut path_and_query = uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_decodes() {
        assert_eq!(
            find("a=1&apikey=k%2By+z", "apikey").unwrap().as_ref(),
            b"k+y z"
        );
        assert_eq!(find("apikey", "apikey").unwrap().as_ref(), b"");
        assert!(find("a=1", "apikey").is_none());
    }

    #[test]
    fn removes() {
        let uri: Uri = "http://h/p?a=1&apikey=x&b=2".parse().unwrap();
        assert_eq!(without(&uri, "apikey").unwrap(), "http://h/p?a=1&b=2");
        let uri: Uri = "/p?apikey=x".parse().unwrap();
        assert_eq!(without(&uri, "apikey").unwrap(), "/p");
        let uri: Uri = "/p?a=1".parse().unwrap();
        assert!(without(&uri, "apikey").is_none());
    }
}
