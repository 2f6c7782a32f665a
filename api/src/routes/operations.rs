//! What operators watch beside the queue: orders whose deadline is near, and the charts of the
//! last 24 hours. Both from the read model; the charts shared by the gateways through Redis.

use std::sync::Arc;
use std::time::Duration;

use delivery_read_model::ReadError;
use delivery_read_model::views::Charts;
use delivery_workflows::duration_text;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;

use crate::auth::{BearerAuth, Role};
use crate::model::{
    AtRiskEntry, AtRiskList, Deadline, HourCount, OperationsCharts, ReasonCount, StageDuration,
    State, timestamp,
};
use crate::problem::ApiError;
use crate::read::{Audience, delivery_order};
use crate::routes::Tag;
use crate::state::AppState;

/// The window when none is asked for.
const DEFAULT_WITHIN: Duration = Duration::from_secs(2 * 3600);
/// The narrowest and the widest window: the longest deadline of the graph is 7 days, so a
/// wider window could only list every open order.
const MIN_WITHIN: Duration = Duration::from_secs(60);
const MAX_WITHIN: Duration = Duration::from_secs(7 * 86_400);
/// How long computed charts are shared by every gateway (Redis, `operator-charts`). The
/// aggregates read a day of audit trail; a minute old is fresh enough for a dashboard.
pub const CHARTS_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct OperationsApi;

fn read_failed(error: ReadError) -> ApiError {
    ApiError::unavailable("the read model is unavailable", &error)
}

/// `within` as a duration of 1 minute to 7 days (`90m`, `2h`, `3d`).
pub fn window(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_WITHIN);
    };
    let bad = |why: String| ApiError::bad_request("invalid-window", why);
    // Short before parsing: the parser multiplies, and no valid window needs more digits.
    if text.len() > 8 {
        return Err(bad(format!(
            "within is a duration such as 90m, 2h or 3d, got {text:?}"
        )));
    }
    let within = duration_text::parse(text).map_err(bad)?;
    if !(MIN_WITHIN..=MAX_WITHIN).contains(&within) {
        return Err(bad(format!(
            "within must be between {} and {}, got {text:?}",
            duration_text::format(MIN_WITHIN),
            duration_text::format(MAX_WITHIN)
        )));
    }
    Ok(within)
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Queries")]
impl OperationsApi {
    /// Orders whose next deadline (pickup, delivery, auto-confirm) falls within `within` of now
    /// (default `2h`, from `1m` to `7d`), soonest first, with the time left; deadlines already
    /// past whose timer has not fired yet come first (operators, admins).
    #[oai(
        path = "/operator/at-risk",
        method = "get",
        operation_id = "get_orders_at_risk"
    )]
    async fn at_risk(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(max_length = 16))] within: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] limit: Query<Option<u32>>,
    ) -> Result<Json<AtRiskList>, ApiError> {
        auth.0.require(&[Role::Operator, Role::Admin])?;
        let within = window(within.0.as_deref())?;
        let (rows, counts) = tokio::try_join!(
            state.read_model.at_risk(within, limit.0.unwrap_or(100)),
            state.read_model.at_risk_counts(within),
        )
        .map_err(read_failed)?;
        // Counted a moment apart from the list: never report fewer than it shows.
        let total = counts.iter().map(|(_, n)| *n).sum::<i64>().max(0) as u64;
        Ok(Json(AtRiskList {
            within_seconds: within.as_secs(),
            total: total.max(rows.len() as u64),
            entries: rows
                .into_iter()
                .map(|row| AtRiskEntry {
                    delivery_order: delivery_order(&row.order, Audience::Staff),
                    deadline: Deadline {
                        timer: row.timer,
                        due_at: timestamp(&row.due_at),
                    },
                    seconds_left: row.seconds_left.floor() as i64,
                })
                .collect(),
        }))
    }

    /// Charts of the last 24 hours (operators, admins): orders entering each state per hour,
    /// the time spent in each stage (p50, p95) and failures by reason, from SQL aggregates over
    /// the read model. Computed at most once a minute across all gateways (shared in Redis for
    /// 60 s; `generated_at` says when).
    #[oai(
        path = "/operator/charts",
        method = "get",
        operation_id = "get_operations_charts"
    )]
    async fn charts(
        &self,
        auth: BearerAuth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<OperationsCharts>, ApiError> {
        auth.0.require(&[Role::Operator, Role::Admin])?;
        let charts = match state.read_model.shared_charts().await {
            Some(charts) => charts,
            None => {
                let charts = state.read_model.charts().await.map_err(read_failed)?;
                state.read_model.share_charts(&charts, CHARTS_TTL).await;
                charts
            }
        };
        Ok(Json(charts_document(charts)))
    }
}

fn state_of(text: &str) -> Option<State> {
    serde_json::from_value::<delivery_workflows::State>(serde_json::Value::String(text.into()))
        .ok()
        .map(Into::into)
}

/// The aggregates as the API shows them. Audit states are the graph's; a row that is not one
/// (nothing writes such) is left out rather than failing the dashboard.
fn charts_document(charts: Charts) -> OperationsCharts {
    OperationsCharts {
        generated_at: charts.generated_at,
        hours: charts.hours,
        entered: charts
            .entered
            .into_iter()
            .filter_map(|c| {
                Some(HourCount {
                    state: state_of(&c.state)?,
                    hour: c.hour,
                    count: c.count.max(0) as u64,
                })
            })
            .collect(),
        stage_durations: charts
            .stage_durations
            .into_iter()
            .filter_map(|s| {
                Some(StageDuration {
                    stage: state_of(&s.stage)?,
                    count: s.count.max(0) as u64,
                    p50_seconds: s.p50_seconds,
                    p95_seconds: s.p95_seconds,
                })
            })
            .collect(),
        failures_by_reason: charts
            .failures_by_reason
            .into_iter()
            .map(|r| ReasonCount {
                reason: r.reason,
                count: r.count.max(0) as u64,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_refused_in_words() {
        assert_eq!(window(None).unwrap(), DEFAULT_WITHIN);
        assert_eq!(window(Some("90m")).unwrap(), Duration::from_secs(5400));
        assert_eq!(window(Some("7d")).unwrap(), MAX_WITHIN);
        for bad in [
            "",
            "2",
            "2y",
            "30s",
            "8d",
            "-1h",
            "1h30m",
            "999999999999999d",
        ] {
            assert!(window(Some(bad)).is_err(), "{bad}");
        }
    }
}
