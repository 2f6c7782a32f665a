//! The gateway as one poem endpoint: the OpenAPI routes, the spec, Swagger UI, and the
//! middleware around them.

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route, get, post};
use poem_openapi::OpenApiService;

use crate::middleware;
use crate::route_table::{self, RouteTable};
use crate::routes::batches::BatchesApi;
use crate::routes::codec;
use crate::routes::commands::CommandsApi;
use crate::routes::compat::CompatApi;
use crate::routes::delivery_orders::DeliveryOrdersApi;
use crate::routes::me::MeApi;
use crate::routes::operations::OperationsApi;
use crate::routes::partners::PartnersApi;
use crate::routes::queries::QueriesApi;
use crate::routes::system::SystemApi;
use crate::routes::system_state::StateApi;
use crate::routes::tracking::TrackingApi;
use crate::routes::ws;
use crate::state::AppState;

pub type Apis = (
    CommandsApi,
    BatchesApi,
    DeliveryOrdersApi,
    QueriesApi,
    OperationsApi,
    MeApi,
    TrackingApi,
    PartnersApi,
    SystemApi,
    StateApi,
    CompatApi,
);

/// The OpenAPI service (its spec is what `/openapi.json` serves).
pub fn openapi() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        Apis::default(),
        "Delivery orders",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Durable delivery orders of the bookstore: payment intake, events through each order's \
         Temporal workflow, queries from the read model. Errors are application/problem+json.",
    )
}

/// The OpenAPI document as JSON.
pub fn spec_json() -> String {
    openapi().spec()
}

/// The route table of this gateway: the spec's paths and the endpoints mounted beside the API
/// (the middleware labels requests with it).
pub fn route_table() -> RouteTable {
    RouteTable::new(RouteTable::spec_paths(&spec_json()))
}

pub fn app(state: Arc<AppState>) -> impl poem::Endpoint {
    // The APIs of this app, built once: `StateApi` keeps the gateway's cache of `/api/state`.
    let api = openapi();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let dist = &state.config.web_dist;
    let csp = crate::web::content_security_policy(
        state.config.map_tiles.as_ref().map(|t| t.origin.as_str()),
    );
    let api = crate::web::with_start_page(api.into_endpoint(), dist, &csp);
    let origins = state.config.codec_cors_origins.clone();
    let tokens = Arc::clone(&state.tokens);
    crate::web::mount(Route::new(), dist, &csp)
        .nest(route_table::DOCS, docs)
        .at(route_table::OPENAPI_JSON, spec)
        .at(
            route_table::poem_path(route_table::WS_DELIVERY_ORDER),
            get(ws::delivery_order),
        )
        .at(route_table::WS_EVENTS, get(ws::events))
        .at(
            route_table::CODEC_DECODE,
            codec::cors(origins.clone(), post(codec::decode)),
        )
        .at(
            route_table::CODEC_ENCODE,
            codec::cors(origins, post(codec::encode)),
        )
        // Only the service's own pages set and drop the codec cookie, from their own origin,
        // which the codec's CORS (the Temporal Web UI's origins) would refuse. A page of another
        // origin cannot: its request with `Authorization` (or a `DELETE`) needs a preflight, and
        // this route answers none.
        .at(
            route_table::CODEC_SESSION,
            post(codec::session).delete(codec::session),
        )
        .nest("/", api)
        .around(middleware::around)
        .data(tokens)
        .data(state)
        .data(Arc::new(route_table()))
}

#[cfg(test)]
mod tests {
    use super::route_table;

    #[test]
    fn every_operation_of_the_spec_is_labelled_by_its_own_template() {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        assert!(paths.len() > 10, "the spec lists the gateway's operations");
        let routes = route_table();
        for template in paths.keys() {
            // A request path: every `{param}` filled in with an id.
            let path: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x-1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            assert_eq!(routes.label(&path), template, "{path}");
        }
    }
}
