//! The NOC board: web pages and their assets, embedded in the binary (no CDN, works offline).
//! Plain HTML, CSS and JavaScript from `web/`, no framework and no build step. The pages hold
//! no data of their own: their scripts read and act through the JSON API like any other client,
//! sending the operator's token. Routing is `sources::http`'s; this module answers
//! `GET /` (the board), `GET /incident/{id}` (one incident) and `GET /assets/{name}`.
//!
//! Caching: a page refers to each asset as `/assets/NAME?v=HASH`, HASH taken from the asset's
//! content when the pages are first served, so an asset asked for with its current hash is
//! cacheable for good (`immutable`) and a new build is fetched at once. Pages, and assets asked
//! for without the current hash, are revalidated on every load with their ETag (304 when
//! unchanged).

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{StatusCode, Uri};
use sha2::{Digest, Sha256};

use crate::incident::IncidentId;
use crate::sources::http::{ApiError, Response};

/// One embedded file of `web/`.
struct File {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";

/// Every file of `web/`. Pages (HTML) are served at their routes, the rest under `/assets/`.
const FILES: &[File] = &[
    File {
        name: "board.html",
        content_type: HTML,
        body: include_bytes!("../web/board.html"),
    },
    File {
        name: "incident.html",
        content_type: HTML,
        body: include_bytes!("../web/incident.html"),
    },
    File {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/app.css"),
    },
    File {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/common.js"),
    },
    File {
        name: "board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/board.js"),
    },
    File {
        name: "incident.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/incident.js"),
    },
    File {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/favicon.svg"),
    },
];

/// The pages load nothing from elsewhere and run no inline script: data from alerts (labels,
/// annotations, runbook links) can never become script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A file ready to serve.
struct Served {
    content_type: &'static str,
    body: Bytes,
    /// The first 16 hex digits of the content's SHA-256: the ETag and the `?v=` of its URL.
    hash: String,
}

impl Served {
    fn new(content_type: &'static str, body: Bytes) -> Served {
        let digest = Sha256::digest(&body);
        let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Served {
            content_type,
            body,
            hash,
        }
    }

    fn is_page(&self) -> bool {
        self.content_type == HTML
    }
}

/// Every file by name, pages with their asset references versioned.
fn site() -> &'static HashMap<&'static str, Served> {
    static SITE: OnceLock<HashMap<&'static str, Served>> = OnceLock::new();
    SITE.get_or_init(|| {
        let mut site: HashMap<&'static str, Served> = FILES
            .iter()
            .filter(|f| f.content_type != HTML)
            .map(|f| {
                (
                    f.name,
                    Served::new(f.content_type, Bytes::from_static(f.body)),
                )
            })
            .collect();
        for page in FILES.iter().filter(|f| f.content_type == HTML) {
            let mut html = String::from_utf8_lossy(page.body).into_owned();
            for (name, asset) in &site {
                html = html.replace(
                    &format!("\"/assets/{name}\""),
                    &format!("\"/assets/{name}?v={}\"", asset.hash),
                );
            }
            let served = Served::new(HTML, Bytes::from(html));
            site.insert(page.name, served);
        }
        site
    })
}

/// Answer `GET /`, `/incident/{id}` or `/assets/{name}` (`segments` as routed).
pub fn respond(segments: &[&str], uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
    let site = site();
    let (file, immutable) = match segments {
        [] => (&site["board.html"], false),
        ["incident", id] => {
            // Only the form of the id is checked: whether it exists is the API's answer, given
            // to whoever may ask.
            id.parse::<IncidentId>().map_err(ApiError::not_found)?;
            (&site["incident.html"], false)
        }
        ["assets", name] => {
            let file = site
                .get(name)
                .filter(|f| !f.is_page())
                .ok_or_else(|| ApiError::not_found(format!("no asset {name:?}")))?;
            let version = uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|pair| pair.strip_prefix("v="));
            (file, version == Some(file.hash.as_str()))
        }
        _ => return Err(ApiError::not_found(format!("no page {}", uri.path()))),
    };
    let etag = format!("\"{}\"", file.hash);
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if fresh {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        hyper::Response::new(Full::new(file.body.clone()))
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, value);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if file.is_page() {
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderName;

    fn get(path: &str, headers: &[(&str, &str)]) -> Result<Response, ApiError> {
        let uri: Uri = path.parse().unwrap();
        let segments: Vec<&str> = uri
            .path()
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .collect();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        respond(&segments, &uri, &map)
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn every_asset_a_page_refers_to_is_embedded_and_versioned() {
        for page in ["board.html", "incident.html"] {
            let html = std::str::from_utf8(&site()[page].body).unwrap().to_string();
            let refs: Vec<&str> = html
                .split("\"/assets/")
                .skip(1)
                .map(|rest| &rest[..rest.find('"').unwrap()])
                .collect();
            assert!(refs.len() >= 3, "{page} refers to {refs:?}");
            for r in refs {
                let (name, version) = r
                    .split_once("?v=")
                    .unwrap_or_else(|| panic!("{page}: asset reference {r:?} carries no version"));
                assert_eq!(site()[name].hash, version, "{page}: {r}");
            }
        }
    }

    #[test]
    fn versioned_assets_are_immutable_and_others_revalidate() {
        let css = &site()["app.css"];
        let current = get(&format!("/assets/app.css?v={}", css.hash), &[]).unwrap();
        assert_eq!(
            header(&current, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&current, "content-type"), "text/css; charset=utf-8");
        let stale = get("/assets/app.css?v=0000000000000000", &[]).unwrap();
        assert_eq!(header(&stale, "cache-control"), "no-cache");
        let page = get("/", &[]).unwrap();
        assert_eq!(header(&page, "cache-control"), "no-cache");
        assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    }

    #[test]
    fn a_matching_etag_answers_304_without_a_body() {
        let page = get("/", &[]).unwrap();
        let etag = header(&page, "etag").to_string();
        let again = get("/", &[("if-none-match", &format!("\"x\", W/{etag}"))]).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, "etag"), etag);
        let other = get("/", &[("if-none-match", "\"nope\"")]).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn unknown_assets_pages_and_malformed_incident_ids_are_404() {
        for path in [
            "/assets/nope.js",
            "/assets/board.html",
            "/incident/42",
            "/incident/INC-x",
        ] {
            let err = get(path, &[])
                .err()
                .unwrap_or_else(|| panic!("{path} served"));
            assert_eq!(err.status, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(
            get("/incident/INC-7", &[]).unwrap().status(),
            StatusCode::OK
        );
    }
}
