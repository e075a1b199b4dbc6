//! Sluice's web UI: one page of hand-written HTML, CSS and JavaScript, embedded in the binary
//! with `include_bytes!`, so one `cargo build` builds it and the page loads nothing from any
//! other host.
//!
//! The page talks only to the public HTTP API (`/api/v1`, its event stream and its log
//! follow): whatever the UI does, a script can do. This crate only serves it:
//!
//! - `/ui/NAME.HASH.EXT`: the script, the style sheet and the icon, named by a hash of their
//!   bytes, so a browser keeps them for a year (`immutable`) and a new build is a new name;
//! - every other `GET` outside `/api/`, `/ui/` and the health and metrics paths: the page
//!   itself (`index.html`), so a link to any view (`/dags/ID/runs/RUN`) opens that view. The
//!   page is sent with a strict Content-Security-Policy (`default-src 'self'`, no inline
//!   script or style).
//!
//! **Architecture Invariant:** the UI knows no store, no engine and no Rust type of the API:
//! the JSON it reads is the API's public contract.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of the page: everything from this origin only, no inline
/// script or style, no frames, no plugins.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// An embedded file.
struct Source {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const SOURCES: &[Source] = &[
    Source {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/app.js"),
    },
    Source { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../assets/app.css") },
    Source { name: "icon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../assets/icon.svg") },
];

const INDEX: &str = include_str!("../assets/index.html");

/// An asset with its content-hashed name.
pub struct Asset {
    /// The name the page's template uses (`app.js`).
    pub name: &'static str,
    /// The name it is served under (`app.0123456789ab.js`).
    pub hashed: String,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The quoted ETag (the content hash).
    pub etag: String,
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every asset, hashed on first use.
pub fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|s| {
                let hash = digest(s.bytes);
                let short = &hash[..12];
                let hashed = match s.name.rsplit_once('.') {
                    Some((stem, ext)) => format!("{stem}.{short}.{ext}"),
                    None => format!("{}.{short}", s.name),
                };
                Asset {
                    name: s.name,
                    hashed,
                    content_type: s.content_type,
                    bytes: s.bytes,
                    etag: format!("\"{hash}\""),
                }
            })
            .collect()
    })
}

/// The page, with each `{{NAME}}` replaced by the asset's hashed path, and its ETag.
fn index() -> &'static (String, String) {
    static PAGE: OnceLock<(String, String)> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut html = INDEX.to_string();
        for a in assets() {
            html = html.replace(&format!("{{{{{}}}}}", a.name), &format!("/ui/{}", a.hashed));
        }
        let etag = format!("\"{}\"", digest(html.as_bytes()));
        (html, etag)
    })
}

/// Whether a path is one the page draws (a view), not the API's or an asset's.
pub fn is_page(path: &str) -> bool {
    let reserved = ["/api", "/ui", "/metrics", "/healthz", "/readyz"];
    !reserved.iter().any(|r| path == *r || path.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// Whether a request is for the UI (the page or an asset), which anyone may load: it holds no
/// data, and the page asks for a token when the API wants one.
pub fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && (is_page(path) || path.starts_with("/ui/"))
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn respond(
    headers: &HeaderMap,
    etag: &str,
    cache: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let mut response =
        if not_modified(headers, etag) { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The page (`index.html`), whatever view the path names.
pub fn page(headers: &HeaderMap) -> Response {
    let (html, etag) = index();
    let mut response = respond(headers, etag, "no-cache", "text/html; charset=utf-8", html.clone().into_bytes());
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let assets = assets();
    if let Some(a) = assets.iter().find(|a| a.hashed == file) {
        return respond(&headers, &a.etag, "public, max-age=31536000, immutable", a.content_type, a.bytes.to_vec());
    }
    // The plain name too (a bookmark of the icon, a hand-written link): not cached for long.
    if let Some(a) = assets.iter().find(|a| a.name == file) {
        return respond(&headers, &a.etag, "no-cache", a.content_type, a.bytes.to_vec());
    }
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such asset").into_response()
}

/// The assets' routes (`/ui/{file}`), for the API's router to merge. The page itself is the
/// router's fallback for paths [`is_page`] accepts: see [`page`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui/{file}", get(asset))
}

/// The bytes of script and style the page loads (the budget is 150 KB).
pub fn script_and_style_bytes() -> usize {
    SOURCES.iter().filter(|s| s.name.ends_with(".js") || s.name.ends_with(".css")).map(|s| s.bytes.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> Router {
        router().fallback(|headers: HeaderMap| async move { page(&headers) })
    }

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 10 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_page_names_hashed_assets_that_are_served_immutable() {
        let r = get("/dags/x/runs/y", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let html = text(r).await;
        assert!(!html.contains("{{"), "{html}");
        for a in assets() {
            assert!(html.contains(&format!("/ui/{}", a.hashed)), "{} not in the page", a.hashed);
            let r = get(&format!("/ui/{}", a.hashed), &[]).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
            let again = get(&format!("/ui/{}", a.hashed), &[("if-none-match", &etag)]).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        assert_eq!(get("/ui/app.000000000000.js", &[]).await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn api_paths_are_not_pages() {
        for p in ["/api", "/api/v1/dags", "/ui/app.js", "/metrics", "/healthz", "/readyz"] {
            assert!(!is_page(p), "{p}");
        }
        for p in ["/", "/dags/daily", "/apiary", "/dags/a/runs/b/tasks/c/tries/1"] {
            assert!(is_page(p), "{p}");
        }
        assert!(!is_public(&Method::POST, "/"));
        assert!(is_public(&Method::GET, "/ui/app.js"));
    }

    #[test]
    fn script_and_style_fit_the_budget() {
        assert!(script_and_style_bytes() <= 150_000, "{} bytes", script_and_style_bytes());
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        let (html, _) = index();
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "{html}");
        for s in SOURCES {
            // The SVG namespace is a name, not a request.
            let text = String::from_utf8_lossy(s.bytes).replace("http://www.w3.org/2000/svg", "");
            // The only absolute URLs are the AWS console's (links the user may follow).
            for (at, _) in text.match_indices("https://") {
                let rest = &text[at..(at + 60).min(text.len())];
                assert!(rest.contains("console.aws.amazon.com"), "{}: {rest}", s.name);
            }
            assert!(!text.contains("http://"), "{}", s.name);
        }
    }
}
