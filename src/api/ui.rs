//! The web dashboard: one page (`GET /ui`), its script and its style sheet, embedded in the
//! binary so nothing is fetched from anywhere else. The page reads the same open endpoints as
//! `aliasctl` (`/v1/aliases`, `/v1/services`, the history, `/v1/cluster`) and follows
//! `/v1/events`; its actions are the API's own requests with the token the operator typed, so
//! the page can do nothing the API would not let a script do.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles only from these
//! files, requests only to this origin, no framing) and `X-Content-Type-Options: nosniff`.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::dto::ErrorDto;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// No inline script or style, no `eval`, requests only back to the API itself, and the page may
/// not be framed (against clickjacking of the action buttons).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded asset with its type and the security headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The assets change only with the binary; revalidating is cheap on loopback.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/ui",
    tag = "ui",
    summary = "The web dashboard: every alias live, and the actions (HTML)",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String)
    )
)]
pub async fn ui_page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The page's files by name, with their types.
const FILES: [(&str, &str, &str); 2] = [
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
];

#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "ui",
    summary = "The dashboard's script (`app.js`) and style sheet (`app.css`)",
    params(
        ("file" = String, Path, description = "`app.js` or `app.css`", example = "app.js")
    ),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css")
        )),
        (status = 404, description = "No such file", body = ErrorDto)
    )
)]
pub async fn ui_file(Path(name): Path<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, kind, body)| asset(kind, body))
        .ok_or_else(|| ApiError::NotFound(format!("no file `{name}` in the dashboard")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn headers_of(response: Response) -> (axum::http::HeaderMap, String) {
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_asset_has_its_type_and_the_security_headers() {
        let file = async |name: &str| super::ui_file(Path(name.to_owned())).await.unwrap();
        for (response, kind) in [
            (ui_page().await, "text/html"),
            (file("app.js").await, "text/javascript"),
            (file("app.css").await, "text/css"),
        ] {
            let (headers, body) = headers_of(response).await;
            assert!(!body.is_empty(), "{kind}");
            let get = |name: header::HeaderName| headers[name].to_str().unwrap().to_owned();
            assert!(get(header::CONTENT_TYPE).starts_with(kind), "{kind}");
            assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let csp = get(header::CONTENT_SECURITY_POLICY);
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(directive), "{csp}");
            }
            assert!(!csp.contains("unsafe"), "{csp}");
        }
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_404() {
        let response = ui_file(Path("../aliasd.toml".into())).await.into_response();
        assert_eq!(response.status(), axum::http::StatusCode::NOT_FOUND);
    }

    /// The CSP forbids inline script and style, so the page must not need them: no `<script>`
    /// with a body, no `style=` or `on...=` attributes, and the script builds no HTML from text.
    #[test]
    fn the_page_needs_nothing_the_policy_forbids() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(html.contains(r#"<script src="/ui/app.js""#), "{html}");
        assert_eq!(html.matches("<script").count(), 1, "one external script");
        assert!(!html.contains(" style="), "inline style");
        assert!(!html.contains(" onclick="), "inline handler");
        for forbidden in [
            "innerhtml",
            "outerhtml",
            "insertadjacenthtml",
            "eval(",
            "new function",
        ] {
            assert!(
                !APP_JS.to_ascii_lowercase().contains(forbidden),
                "app.js uses {forbidden}"
            );
        }
        for external in ["http://", "https://", "//cdn"] {
            assert!(!html.contains(external), "index.html links {external}");
            assert!(!APP_CSS.contains(external), "app.css links {external}");
        }
    }
}
