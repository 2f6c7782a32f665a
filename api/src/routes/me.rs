//! What a customer reaches without knowing an id: their own delivery orders.

use std::sync::Arc;

use delivery_read_model::reader::ListFilter;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;

use crate::auth::{BearerAuth, Role};
use crate::model::DeliveryOrderPage;
use crate::problem::ApiError;
use crate::routes::{Tag, queries};
use crate::state::AppState;

#[derive(Default)]
pub struct MeApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Queries")]
impl MeApi {
    /// The caller's own delivery orders (customers), newest first, paged by `next_cursor`
    /// (`limit` 1-100, default 20). Only orders whose `customer_id` is the token's subject.
    #[oai(
        path = "/me/delivery-orders",
        method = "get",
        operation_id = "list_my_delivery_orders"
    )]
    async fn mine(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        #[oai(validator(max_length = 100))] cursor: Query<Option<String>>,
    ) -> Result<Json<DeliveryOrderPage>, ApiError> {
        let caller = auth.0;
        caller.require(&[Role::Customer])?;
        let filter = ListFilter {
            customer_id: Some(caller.sub.clone()),
            ..ListFilter::default()
        };
        queries::page(&caller, &state, &filter, limit.0.unwrap_or(20), cursor.0).await
    }
}
