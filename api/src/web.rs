//! The web UI (built from `web/` by Vite) served by the gateway: hashed assets cached for good,
//! and `index.html` for each of the app's own paths, so a reload or a shared link of
//! `/track/{id}` opens the page. The app speaks to the gateway only through the public API.

use std::path::{Path, PathBuf};

use poem::endpoint::{StaticFileEndpoint, StaticFilesEndpoint};
use poem::http::{StatusCode, header};
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};

use crate::problem::problem_response;

/// Paths whose pages the app draws itself (every path below them too).
pub const APP_PATHS: &[&str] = &["/track", "/ops"];
/// The metrics label of every web UI request.
pub const ROUTE_LABEL: &str = "/ (web UI)";

/// Whether `path` belongs to the web UI rather than to the API.
pub fn is_ui_path(path: &str) -> bool {
    path == "/"
        || path == "/favicon.svg"
        || path.starts_with("/assets/")
        || APP_PATHS.iter().any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// What the UI may load: only this origin (the API and its WebSockets included), and the map
/// tiles' origin when `MAP_TILE_URL` names one; no inline script, no framing.
pub fn content_security_policy(tile_origin: Option<&str>) -> String {
    let tiles = tile_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:{tiles}; \
         style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'"
    )
}

/// Adds the UI's routes to `route`.
pub fn mount(route: Route, dist: &Path, csp: &str) -> Route {
    if dist.join("index.html").is_file() {
        tracing::info!(dist = %dist.display(), "serving the web UI");
    } else {
        tracing::warn!(
            dist = %dist.display(),
            "the web UI is not built (npm install && npm run build in web/); its pages answer 503"
        );
    }
    let index = || {
        AppPage {
            index: dist.join("index.html"),
        }
        .with(page_headers(csp))
    };
    let assets = StaticFilesEndpoint::new(dist.join("assets")).with(
        page_headers(csp).overriding(header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
    );
    let mut route = route
        .at(
            "/favicon.svg",
            StaticFileEndpoint::new(dist.join("favicon.svg")),
        )
        .nest("/assets", assets);
    for path in APP_PATHS {
        route = route.nest(*path, index());
    }
    route
}

/// `api` (nested at the root, so it would also answer `/`) with the app's start page at `/`.
pub fn with_start_page<E: Endpoint>(api: E, dist: &Path, csp: &str) -> StartPageOr<E> {
    StartPageOr {
        start: AppPage {
            index: dist.join("index.html"),
        }
        .with(page_headers(csp)),
        api,
    }
}

pub struct StartPageOr<E> {
    start: poem::middleware::SetHeaderEndpoint<AppPage>,
    api: E,
}

impl<E: Endpoint> Endpoint for StartPageOr<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() == "/" {
            self.start.call(req).await.map(IntoResponse::into_response)
        } else {
            self.api.call(req).await.map(IntoResponse::into_response)
        }
    }
}

fn page_headers(csp: &str) -> SetHeader {
    SetHeader::new()
        .overriding(header::CONTENT_SECURITY_POLICY, csp.to_owned())
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .overriding(header::REFERRER_POLICY, "same-origin")
}

/// `index.html`, read per request so a rebuilt UI shows without a restart; never cached, since
/// it names the current assets.
pub struct AppPage {
    index: PathBuf,
}

impl Endpoint for AppPage {
    type Output = Response;

    async fn call(&self, _req: Request) -> poem::Result<Response> {
        Ok(match tokio::fs::read(&self.index).await {
            Ok(html) => Response::builder()
                .content_type("text/html; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(html),
            Err(_) => problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "web-ui-not-built",
                "the web UI is not built: run `npm install && npm run build` in web/ (make run does)",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use poem::Route;
    use poem::endpoint::make_sync;
    use poem::test::TestClient;

    use super::{content_security_policy, is_ui_path, mount, with_start_page};

    #[tokio::test]
    async fn pages_sit_beside_an_api_nested_at_the_root() {
        let dist = Path::new("/nonexistent");
        let csp = content_security_policy(None);
        let app = mount(Route::new(), dist, &csp)
            .at("/api/v1/ws/events", make_sync(|_| "ws"))
            .nest("/", with_start_page(make_sync(|_| "api"), dist, &csp));
        let client = TestClient::new(app);
        for page in ["/", "/ops", "/ops/queue", "/track/x"] {
            let response = client.get(page).send().await;
            assert_eq!(response.0.status().as_u16(), 503, "{page}");
        }
        for api in ["/api/v1/tracking/x", "/healthz", "/opsx", "/trackx"] {
            client.get(api).send().await.assert_text("api").await;
        }
    }

    #[test]
    fn map_tiles_may_load_from_their_origin_only() {
        let none = content_security_policy(None);
        assert!(none.contains("img-src 'self' data:;"), "{none}");
        let tiles = content_security_policy(Some("https://tiles.example:8443"));
        assert!(
            tiles.contains("img-src 'self' data: https://tiles.example:8443;"),
            "{tiles}"
        );
        assert!(tiles.contains("script-src 'self';"), "{tiles}");
    }

    #[test]
    fn the_app_owns_its_pages_and_nothing_of_the_api() {
        for path in [
            "/",
            "/track/abc",
            "/ops",
            "/ops/queue",
            "/assets/index-1.js",
            "/favicon.svg",
        ] {
            assert!(is_ui_path(path), "{path}");
        }
        for path in [
            "/api/v1/tracking/abc",
            "/tracking",
            "/opsx",
            "/healthz",
            "/docs",
            "/deliveries/create",
        ] {
            assert!(!is_ui_path(path), "{path}");
        }
    }
}
