//! A fully read request in the shape the handlers want: decoded path, parsed
//! query, headers and the whole body.

use bytes::Bytes;
use hyper::HeaderMap;

use crate::util::percent_decode_path;

pub(crate) struct Req {
    /// Upper-case method.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Raw path as sent (for building relative locations).
    pub raw_path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `Host` header, or the listener address when absent.
    pub host: String,
}

impl Req {
    pub(crate) fn new(
        method: &str,
        raw_path: &str,
        raw_query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
        fallback_host: &str,
    ) -> Req {
        let query = raw_query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let host = headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or(fallback_host)
            .to_string();
        Req {
            method: method.to_ascii_uppercase(),
            path: percent_decode_path(raw_path),
            raw_path: raw_path.to_string(),
            query,
            headers,
            body,
            host,
        }
    }

    /// First value of a query parameter.
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter.
    pub(crate) fn query_all(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A header as text; non-UTF-8 values count as absent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a possibly repeated, comma-separated header, parameters
    /// (`;q=..`) stripped.
    pub(crate) fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|item| item.split(';').next().unwrap_or("").trim().to_string())
            .filter(|item| !item.is_empty())
            .collect()
    }
}
