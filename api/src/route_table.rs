//! The route templates the gateway serves, in one table: the paths of the OpenAPI operations as
//! the spec states them (`/api/v1/delivery-orders/{id}`), and the few endpoints mounted beside
//! the typed API (WebSockets, the spec itself, Swagger UI). Requests are labelled for metrics,
//! logs and rate limits by the template they match, so no label carries an id.
//!
//! The app builds the table from its spec and hands it to the middleware; this module depends
//! on neither.

use crate::web;

/// One delivery order's live updates (WebSocket).
pub const WS_DELIVERY_ORDER: &str = "/api/v1/ws/delivery-orders/{id}";
/// Every order's live updates (WebSocket).
pub const WS_EVENTS: &str = "/api/v1/ws/events";
/// The OpenAPI document.
pub const OPENAPI_JSON: &str = "/openapi.json";
/// Swagger UI, with everything below it.
pub const DOCS: &str = "/docs";

/// Temporal's codec server protocol (`routes::codec`).
pub const CODEC_ENCODE: &str = "/codec/encode";
pub const CODEC_DECODE: &str = "/codec/decode";
pub const CODEC_SESSION: &str = "/codec/session";

/// The partner webhook's route label (`routes::partners`, an OpenAPI operation), which its
/// handler charges itself.
pub(crate) const WEBHOOK_ROUTE: &str = "/api/v1/partner-webhooks/{partner_id}";

/// The endpoints mounted beside the OpenAPI operations (their paths are not in the spec).
pub const MOUNTED: [&str; 7] = [
    WS_DELIVERY_ORDER,
    WS_EVENTS,
    OPENAPI_JSON,
    DOCS,
    CODEC_ENCODE,
    CODEC_DECODE,
    CODEC_SESSION,
];
/// Mounted endpoints that serve a whole subtree under their path.
const NESTED: [&str; 1] = [DOCS];

/// The label of a request whose path matches no route.
pub const UNMATCHED: &str = "unmatched";

/// A template in poem's path syntax (`{id}` becomes `:id`), for mounting it.
pub fn poem_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match param_name(segment) {
            Some(name) => format!(":{name}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn param_name(segment: &str) -> Option<&str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

#[derive(Debug, Clone)]
struct Template {
    text: String,
    /// `None` for a parameter, the text for a literal segment.
    segments: Vec<Option<String>>,
    nested: bool,
}

impl Template {
    fn new(text: &str, nested: bool) -> Self {
        let segments = segments(text)
            .map(|s| match param_name(s) {
                Some(_) => None,
                None => Some(s.to_owned()),
            })
            .collect();
        Self {
            text: text.to_owned(),
            segments,
            nested,
        }
    }

    /// How many literal segments matched, when `path` matches at all (more is more specific:
    /// `/deliveries/create` beats `/deliveries/{pk}`).
    fn score(&self, path: &[&str]) -> Option<usize> {
        let fits = if self.nested {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        if !fits {
            return None;
        }
        let mut literals = 0;
        for (segment, part) in self.segments.iter().zip(path) {
            match segment {
                Some(literal) if literal == part => literals += 1,
                Some(_) => return None,
                None => {}
            }
        }
        Some(literals)
    }

    fn param<'p>(&self, path: &[&'p str], name: &str) -> Option<&'p str> {
        segments(&self.text)
            .zip(path)
            .find(|(segment, _)| param_name(segment) == Some(name))
            .map(|(_, part)| *part)
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The gateway's route templates.
#[derive(Debug, Clone)]
pub struct RouteTable {
    templates: Vec<Template>,
}

impl RouteTable {
    /// The table of `api_paths` (the spec's paths) and the [`MOUNTED`] endpoints.
    pub fn new<S: AsRef<str>>(api_paths: impl IntoIterator<Item = S>) -> Self {
        let mut templates: Vec<Template> = api_paths
            .into_iter()
            .map(|p| Template::new(p.as_ref(), false))
            .collect();
        templates.extend(MOUNTED.iter().map(|p| Template::new(p, NESTED.contains(p))));
        Self { templates }
    }

    /// The paths of an OpenAPI document (JSON), for [`RouteTable::new`].
    pub fn spec_paths(spec_json: &str) -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(spec_json)
            .ok()
            .and_then(|doc| {
                doc.get("paths")
                    .and_then(|p| p.as_object())
                    .map(|paths| paths.keys().cloned().collect())
            })
            .unwrap_or_default()
    }

    fn matching<'s, 'p>(&'s self, path: &'p str) -> Option<(&'s Template, Vec<&'p str>)> {
        let parts: Vec<&str> = segments(path).collect();
        self.templates
            .iter()
            .filter_map(|t| t.score(&parts).map(|score| (score, t)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, t)| (t, parts))
    }

    /// The label of a request for `path`: the web UI's, the template it matches, else
    /// [`UNMATCHED`].
    pub fn label(&self, path: &str) -> &str {
        if web::is_ui_path(path) {
            return web::ROUTE_LABEL;
        }
        self.matching(path)
            .map(|(template, _)| template.text.as_str())
            .unwrap_or(UNMATCHED)
    }

    /// The delivery order a path is about: the `{id}` of the template it matches
    /// (`/delivery-orders/{id}...`, `/tracking/{id}`, the WebSocket of one order).
    pub fn order_id<'p>(&self, path: &'p str) -> Option<&'p str> {
        let (template, parts) = self.matching(path)?;
        template.param(&parts, "id")
    }

    /// Every template (the labels a request can get, besides the web UI's and [`UNMATCHED`]).
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.templates.iter().map(|t| t.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new([
            "/api/v1/delivery-orders",
            "/api/v1/delivery-orders/{id}",
            "/api/v1/delivery-orders/{id}/events",
            "/api/v1/orderings/{ordering_id}/delivery-orders",
            "/api/v1/partner-webhooks/{partner_id}",
            "/api/v1/tracking/{id}",
            "/deliveries/create",
            "/deliveries/{pk}/status",
            "/healthz",
        ])
    }

    #[test]
    fn ids_become_placeholders() {
        let routes = table();
        assert_eq!(
            routes.label("/api/v1/delivery-orders/0196a3b0-7c1e-7cc0-9d1e-2f3a4b5c6d7e/events"),
            "/api/v1/delivery-orders/{id}/events"
        );
        assert_eq!(
            routes.label("/api/v1/orderings/ord-1/delivery-orders"),
            "/api/v1/orderings/{ordering_id}/delivery-orders"
        );
        assert_eq!(
            routes.label("/api/v1/partner-webhooks/sim"),
            "/api/v1/partner-webhooks/{partner_id}"
        );
        assert_eq!(
            routes.label("/api/v1/delivery-orders"),
            "/api/v1/delivery-orders"
        );
        assert_eq!(
            routes.label("/api/v1/ws/delivery-orders/abc"),
            WS_DELIVERY_ORDER
        );
        assert_eq!(routes.label("/healthz/"), "/healthz");
    }

    #[test]
    fn literal_segments_win_over_placeholders() {
        let routes = table();
        assert_eq!(routes.label("/deliveries/create"), "/deliveries/create");
        assert_eq!(
            routes.label("/deliveries/7/status"),
            "/deliveries/{pk}/status"
        );
    }

    #[test]
    fn unknown_paths_share_one_label_and_the_ui_keeps_its_own() {
        let routes = table();
        for path in [
            "/nope",
            "/api/v1/delivery-orders/x/y/z",
            "/api/v2/delivery-orders",
            "/deliveries/7",
        ] {
            assert_eq!(routes.label(path), UNMATCHED, "{path}");
        }
        assert_eq!(routes.label("/"), web::ROUTE_LABEL);
        assert_eq!(routes.label(DOCS), DOCS);
        assert_eq!(routes.label("/docs/oauth-receiver.html"), DOCS);
    }

    #[test]
    fn order_ids_are_found_in_paths_that_name_one() {
        let routes = table();
        assert_eq!(
            routes.order_id("/api/v1/delivery-orders/0196a3b0/events"),
            Some("0196a3b0")
        );
        assert_eq!(routes.order_id("/api/v1/tracking/abc"), Some("abc"));
        assert_eq!(
            routes.order_id("/api/v1/ws/delivery-orders/abc"),
            Some("abc")
        );
        assert_eq!(routes.order_id("/api/v1/delivery-orders"), None);
        assert_eq!(
            routes.order_id("/api/v1/orderings/o-1/delivery-orders"),
            None
        );
        assert_eq!(routes.order_id("/deliveries/7/status"), None);
    }

    #[test]
    fn templates_are_mounted_in_poem_syntax() {
        assert_eq!(
            poem_path(WS_DELIVERY_ORDER),
            "/api/v1/ws/delivery-orders/:id"
        );
        assert_eq!(poem_path(WS_EVENTS), WS_EVENTS);
    }

    #[test]
    fn the_spec_paths_are_read_from_the_document() {
        let spec = r#"{"openapi":"3.0.0","paths":{"/a/{id}":{},"/b":{}}}"#;
        let mut paths = RouteTable::spec_paths(spec);
        paths.sort();
        assert_eq!(paths, ["/a/{id}", "/b"]);
    }
}
