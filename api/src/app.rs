//! The gateway as one poem endpoint: the OpenAPI routes, the spec, Swagger UI, and the
//! middleware around them.

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route, get};
use poem_openapi::OpenApiService;

use crate::middleware;
use crate::routes::batches::BatchesApi;
use crate::routes::commands::CommandsApi;
use crate::routes::compat::CompatApi;
use crate::routes::delivery_orders::DeliveryOrdersApi;
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

/// Route templates the gateway serves (for metrics labels).
const ROUTES: &[&str] = &[
    "/api/v1/payment-events",
    "/api/v1/delivery-orders",
    "/api/v1/delivery-orders/{id}",
    "/api/v1/delivery-orders/{id}/events",
    "/api/v1/orderings/{ordering_id}/delivery-orders",
    "/api/v1/operator/queue",
    "/api/v1/event-batches",
    "/api/v1/tracking/{id}",
    "/api/v1/ws/delivery-orders/{id}",
    "/api/v1/ws/events",
    "/api/v1/partner-webhooks/{partner_id}",
    "/api/state",
    "/deliveries/create",
    "/deliveries/{pk}/status",
    "/event",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/api/v1/ui-config",
    crate::web::ROUTE_LABEL,
];

pub fn is_known_route(route: &str) -> bool {
    ROUTES.contains(&route)
}

pub fn app(state: Arc<AppState>) -> impl poem::Endpoint {
    let api = openapi();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let dist = &state.config.web_dist;
    let api = crate::web::with_start_page(api.into_endpoint(), dist);
    crate::web::mount(Route::new(), dist)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/api/v1/ws/delivery-orders/:id", get(ws::delivery_order))
        .at("/api/v1/ws/events", get(ws::events))
        .nest("/", api)
        .around(middleware::around)
        .data(state)
}
