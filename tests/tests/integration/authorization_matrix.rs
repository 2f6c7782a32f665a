//! Who may send which event to whose order, generated from the graph and sent through the real
//! gateway: every event a caller can send × every role × the caller's own order or another's.
//! A role the graph does not list is 403; a customer or a partner on an order that is not theirs
//! gets 404 (it does not exist for them); everything else applies (200).

use std::collections::{BTreeSet, VecDeque};

use delivery_api::auth::Role;
use delivery_tests::*;
use delivery_workflows::{ActorKind, DELIVERY_ORDER_V1, EventType, State};
use futures::StreamExt;
use serde_json::{Value, json};

/// A body the graph accepts for `event`.
fn data(event: EventType) -> Value {
    match event {
        EventType::PickedUp => json!({"partner_order_number": "PN-M"}),
        EventType::DeliveryFailed => json!({"reason": "WRONG_ADDRESS"}),
        EventType::Disputed => json!({"reason": "NOT_RECEIVED"}),
        EventType::Cancel => json!({"reason": "changed my mind"}),
        EventType::OperatorReship
        | EventType::OperatorCancel
        | EventType::OperatorConfirmDelivered => json!({"note": "decided"}),
        _ => json!({}),
    }
}

fn role_of(kind: ActorKind) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.actor_kind() == kind)
}

/// The shortest way from CREATED to `target` through events callers send, each with a role
/// that may send it.
fn path_to(target: State) -> Vec<(EventType, Role)> {
    let graph = &*DELIVERY_ORDER_V1;
    let mut queue = VecDeque::from([(State::Created, Vec::new())]);
    let mut seen = BTreeSet::from([State::Created]);
    while let Some((state, path)) = queue.pop_front() {
        if state == target {
            return path;
        }
        for t in graph.transitions.iter().filter(|t| t.from == state) {
            let Some(role) = t.sent_by.iter().find_map(|k| role_of(*k)) else {
                continue;
            };
            // DELIVERY_FAILED is never at rest: it escalates at once.
            let to = graph.automatic_transition(t.to).map_or(t.to, |a| a.to);
            if seen.insert(to) {
                let mut next = path.clone();
                next.push((t.event, role));
                queue.push_back((to, next));
            }
        }
    }
    panic!("{target} cannot be reached by callers");
}

/// Every event a caller can send, each with the first state the graph takes it in.
fn callers_events() -> Vec<(EventType, State)> {
    let mut events: Vec<(EventType, State)> = Vec::new();
    for t in &DELIVERY_ORDER_V1.transitions {
        let external = t.sent_by.iter().any(|k| *k != ActorKind::System);
        if external && !events.iter().any(|(e, _)| *e == t.event) {
            events.push((t.event, t.from));
        }
    }
    events
}

#[derive(Debug, Clone)]
struct Cell {
    event: EventType,
    from: State,
    role: Role,
    own: bool,
    expected: u16,
}

fn cells() -> Vec<Cell> {
    let graph = &*DELIVERY_ORDER_V1;
    let mut cells = Vec::new();
    for (event, from) in callers_events() {
        let senders: Vec<ActorKind> = graph
            .transitions
            .iter()
            .filter(|t| t.event == event)
            .flat_map(|t| t.sent_by.iter().copied())
            .collect();
        for role in Role::ALL {
            for own in [true, false] {
                let allowed = senders.contains(&role.actor_kind());
                let owned = matches!(role, Role::Customer | Role::Partner);
                let expected = match (allowed, own) {
                    (false, _) => 403,
                    (true, false) if owned => 404,
                    (true, _) => 200,
                };
                cells.push(Cell {
                    event,
                    from,
                    role,
                    own,
                    expected,
                });
            }
        }
    }
    cells
}

const CUSTOMER: &str = "cust-matrix";

/// The token a cell sends with: the order's own customer or partner, or someone else.
fn token(api: &GatewayProcess, cell: &Cell) -> String {
    let sub = match (cell.role, cell.own) {
        (Role::Customer, true) => CUSTOMER,
        (Role::Customer, false) => "cust-stranger",
        (Role::Partner, true) => "sim",
        (Role::Partner, false) => "rival-partner",
        (_, _) => "staff",
    };
    api.token(sub, &[cell.role])
}

/// Drives a new order to `state`; returns its id and version.
async fn order_in(api: &GatewayProcess, state: State) -> (String, u64) {
    let id = api.paid_order(CUSTOMER).await;
    let mut version = 0;
    for (event, role) in path_to(state) {
        let sub = match role {
            Role::Customer => CUSTOMER,
            Role::Partner => "sim",
            _ => "staff",
        };
        let answer = api
            .post(
                &format!("/api/v1/delivery-orders/{id}/events"),
                &api.token(sub, &[role]),
                &json!({"type": event, "data": data(event)}),
            )
            .await;
        assert_eq!(
            answer.status, 200,
            "driving {id} to {state}: {}",
            answer.text
        );
        version = answer.json["version"].as_u64().unwrap();
    }
    (id, version)
}

/// One order in each of `states`, for the cells that change nothing to share.
async fn shared_orders(
    api: &GatewayProcess,
    states: impl Iterator<Item = State>,
) -> Vec<(State, String, u64)> {
    let mut shared: Vec<(State, String, u64)> = Vec::new();
    for state in states {
        if !shared.iter().any(|(s, _, _)| *s == state) {
            let (id, version) = order_in(api, state).await;
            shared.push((state, id, version));
        }
    }
    shared
}

/// The order a cell acts on: one of its own driven to `from` when it is to apply, else the
/// shared one in `from`; with its version.
async fn order_for(
    api: &GatewayProcess,
    shared: &[(State, String, u64)],
    from: State,
    applies: bool,
) -> (String, u64) {
    if applies {
        return order_in(api, from).await;
    }
    let (_, id, version) = shared.iter().find(|(s, _, _)| *s == from).unwrap();
    (id.clone(), *version)
}

/// The refusals left every shared order as it was: its state, at its version.
async fn unchanged(api: &GatewayProcess, shared: &[(State, String, u64)]) {
    let ops = api.token("staff", &[Role::Operator]);
    for (state, id, version) in shared {
        let read = api
            .get(
                &format!("/api/v1/delivery-orders/{id}?min_version={version}"),
                &ops,
            )
            .await;
        assert_eq!(read.json["state"], state.as_str(), "{}", read.text);
        assert_eq!(read.json["version"], *version, "{}", read.text);
    }
}

#[tokio::test]
async fn every_role_event_and_owner_gets_the_status_the_graph_gives() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let cells = cells();
    assert!(cells.len() >= 9 * 6 * 2, "{} cells", cells.len());

    // Cells that change nothing share one order per state; each cell that applies gets its own.
    let shared = shared_orders(
        api,
        cells.iter().filter(|c| c.expected != 200).map(|c| c.from),
    )
    .await;
    // A few at a time: each applying cell pays for and drives an order of its own.
    let results: Vec<_> = futures::stream::iter(cells.iter().map(|cell| {
        let shared = &shared;
        async move {
            let (id, before) = order_for(api, shared, cell.from, cell.expected == 200).await;
            let answer = api
                .post(
                    &format!("/api/v1/delivery-orders/{id}/events"),
                    &token(api, cell),
                    &json!({"type": cell.event, "data": data(cell.event)}),
                )
                .await;
            (cell.clone(), id, before, answer)
        }
    }))
    .buffer_unordered(4)
    .collect()
    .await;

    let mut wrong = Vec::new();
    for (cell, id, before, answer) in &results {
        if answer.status != cell.expected {
            wrong.push(format!(
                "{:?} as {} on {} order ({}): expected {}, got {} {}",
                cell.event,
                cell.role.as_str(),
                if cell.own { "its own" } else { "another's" },
                cell.from,
                cell.expected,
                answer.status,
                answer.text
            ));
        } else if cell.expected == 200 {
            assert!(
                answer.json["version"].as_u64().unwrap() > *before,
                "{}",
                answer.text
            );
        } else {
            answer.problem(cell.expected);
            let _ = id;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    unchanged(api, &shared).await;
}

/// How long a socket may take to deliver a change.
const SOCKET_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

fn order_id_of(message: &Value) -> Option<&str> {
    message["delivery_order"]["delivery_order_id"]
        .as_str()
        .or(message["delivery_order_id"].as_str())
}

/// Who reads an order, through every read the gateway has: the order, its trail, its ordering,
/// its tracking and route, a `min_version` wait, and both sockets. The order belongs to
/// `CUSTOMER` and is carried by the partner `sim`; each caller reads it (200) or not (404, or
/// 403 where its role has no business at all), whatever other roles its token holds.
#[tokio::test]
async fn every_role_reads_only_what_it_may() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let (id, version) = order_in(api, State::PickedUp).await;
    let ops = api.token("staff", &[Role::Operator]);
    let order = api
        .projected(
            &format!("/api/v1/delivery-orders/{id}?min_version={version}"),
            &ops,
        )
        .await;
    assert_eq!(order.status, 200, "{}", order.text);
    let ordering = order.json["ordering_id"].as_str().unwrap().to_owned();

    // (sub, roles, reads the order, may track at all)
    let callers: [(&str, &[Role], bool, bool); 10] = [
        (CUSTOMER, &[Role::Customer], true, true),
        ("cust-stranger", &[Role::Customer], false, true),
        ("sim", &[Role::Partner], true, false),
        ("rival-partner", &[Role::Partner], false, false),
        // One more role never widens another.
        ("mallory", &[Role::Customer, Role::Partner], false, true),
        ("sim", &[Role::Customer, Role::Partner], true, true),
        ("staff", &[Role::Operator], true, true),
        ("staff", &[Role::Admin], true, true),
        ("staff", &[Role::OrderManagement], true, false),
        ("staff", &[Role::PaymentService], true, false),
    ];
    let mut wrong = Vec::new();
    for (sub, roles, reads, tracks) in callers {
        let token = api.token(sub, roles);
        let read = if reads { 200 } else { 404 };
        let track = match (tracks, reads) {
            (false, _) => 403,
            (true, true) => 200,
            (true, false) => 404,
        };
        let expectations = [
            (format!("/api/v1/delivery-orders/{id}"), read),
            (format!("/api/v1/delivery-orders/{id}/events"), read),
            // Waiting for a version the order has not reached: 409 after the wait for those who
            // may read it, 404 at once for the others.
            (
                format!("/api/v1/delivery-orders/{id}?min_version={}", version + 50),
                if reads { 409 } else { 404 },
            ),
            (
                format!("/api/v1/orderings/{ordering}/delivery-orders"),
                read,
            ),
            (format!("/api/v1/tracking/{id}"), track),
            (format!("/api/v1/tracking/{id}/route"), track),
        ];
        for (path, expected) in expectations {
            let answer = api.get(&path, &token).await;
            if answer.status != expected {
                wrong.push(format!(
                    "{sub} {roles:?} GET {path}: expected {expected}, got {} {}",
                    answer.status, answer.text
                ));
            } else if expected != 200 {
                answer.problem(expected);
            }
        }
        let socket = format!(
            "ws://127.0.0.1:{}/api/v1/ws/delivery-orders/{id}?access_token={token}",
            api.port
        );
        let status = match tokio_tungstenite::connect_async(socket).await {
            Ok((mut socket, _)) => {
                let snapshot = next_socket_message(&mut socket, SOCKET_PATIENCE).await;
                assert_eq!(order_id_of(&snapshot), Some(id.as_str()), "{snapshot}");
                200
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(other) => panic!("{sub}: handshake: {other}"),
        };
        if status != read {
            wrong.push(format!(
                "{sub} {roles:?} WS /ws/delivery-orders/{id}: expected {read}, got {status}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} reads wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The stream of every change: a token that is a customer and a partner sees its own orders
    // and the ones it carries, not the order of somebody else carried by somebody else.
    let watch = |sub: &str| {
        let url = format!(
            "ws://127.0.0.1:{}/api/v1/ws/events?access_token={}",
            api.port,
            api.token(sub, &[Role::Customer, Role::Partner])
        );
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let mut carrier = watch("sim").await;
    let mut mallory = watch("mallory").await;
    let own = api.paid_order("mallory").await;
    let delivered = api
        .post(
            &format!("/api/v1/delivery-orders/{id}/events"),
            &api.token("sim", &[Role::Partner]),
            &json!({"type": EventType::Delivered, "data": {}}),
        )
        .await;
    assert_eq!(delivered.status, 200, "{}", delivered.text);
    let cancelled = api
        .post(
            &format!("/api/v1/delivery-orders/{own}/events"),
            &ops,
            &json!({"type": EventType::Cancel, "data": data(EventType::Cancel)}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    loop {
        let message = next_socket_message(&mut carrier, SOCKET_PATIENCE).await;
        assert_ne!(order_id_of(&message), Some(own.as_str()), "{message}");
        if order_id_of(&message) == Some(id.as_str()) && message["type"] == "update" {
            assert_eq!(message["delivery_order"]["state"], "DELIVERED", "{message}");
            break;
        }
    }
    // Each socket gets the changes in the order they were published, so by the time the
    // cancellation of mallory's own order arrives, the delivery before it would have too.
    loop {
        let message = next_socket_message(&mut mallory, SOCKET_PATIENCE).await;
        assert_ne!(order_id_of(&message), Some(id.as_str()), "{message}");
        if order_id_of(&message) == Some(own.as_str())
            && message["delivery_order"]["state"] == "CANCELLED"
        {
            break;
        }
    }
}

/// What a token holding `roles` gets for `event` sent as `sent_as` (or as the first of its roles
/// the graph lets send it) by `sub`: 403 when no role it holds may send the event or it names
/// one it does not hold, 404 when the role it acts as is a customer or a partner and the order is
/// not `sub`'s, else 200. The other role never widens the one it acts as.
fn expected_for(event: EventType, roles: &[Role], sent_as: Option<Role>, sub: &str) -> u16 {
    let senders = DELIVERY_ORDER_V1.senders(event);
    let allowed = |r: Role| senders.contains(&r.actor_kind());
    let role = match sent_as {
        Some(r) if !roles.contains(&r) || !allowed(r) => return 403,
        Some(r) => r,
        None => match roles.iter().copied().find(|r| allowed(*r)) {
            Some(r) => r,
            None => return 403,
        },
    };
    let owns = match role {
        Role::Customer => sub == CUSTOMER,
        Role::Partner => sub == "sim",
        _ => true,
    };
    if owns { 200 } else { 404 }
}

/// A token with two roles sending one event.
#[derive(Debug, Clone)]
struct MultiCell {
    event: EventType,
    from: State,
    sub: &'static str,
    roles: [Role; 2],
    sent_as: Option<Role>,
    expected: u16,
}

impl MultiCell {
    /// What decides the answer: cells with the same key get the same answer whatever else
    /// they hold, so one of each is enough where each costs an order of its own.
    fn key(&self) -> (EventType, u16, Option<Role>, &'static str) {
        let acts_as = self.sent_as.or_else(|| {
            let senders = DELIVERY_ORDER_V1.senders(self.event);
            self.roles
                .into_iter()
                .find(|r| senders.contains(&r.actor_kind()))
        });
        (self.event, self.expected, acts_as, self.sub)
    }

    fn body(&self) -> Value {
        let mut body = json!({"type": self.event, "data": data(self.event)});
        if let Some(role) = self.sent_as {
            body["sent_as"] = json!(role.as_str());
        }
        body
    }

    /// Batches take operators, partners and admins.
    fn may_batch(&self) -> bool {
        self.roles
            .iter()
            .any(|r| matches!(r, Role::Operator | Role::Partner | Role::Admin))
    }
}

/// Every event × every pair of roles one of which is a customer or a partner (whose orders
/// are their own), in both orders and sent as either, or as a role the token lacks × the
/// order's own customer, its partner, or a stranger.
fn multi_role_cells() -> Vec<MultiCell> {
    let mut cells = Vec::new();
    for (event, from) in callers_events() {
        for (i, a) in Role::ALL.into_iter().enumerate() {
            for b in Role::ALL.into_iter().skip(i + 1) {
                if ![a, b]
                    .iter()
                    .any(|r| matches!(r, Role::Customer | Role::Partner))
                {
                    continue;
                }
                let lacking = Role::ALL.into_iter().find(|r| *r != a && *r != b).unwrap();
                let shapes = [
                    ([a, b], None),
                    ([b, a], None),
                    ([a, b], Some(a)),
                    ([a, b], Some(b)),
                    ([a, b], Some(lacking)),
                ];
                for (roles, sent_as) in shapes {
                    for sub in [CUSTOMER, "sim", "mallory"] {
                        cells.push(MultiCell {
                            event,
                            from,
                            sub,
                            roles,
                            sent_as,
                            expected: expected_for(event, &roles, sent_as, sub),
                        });
                    }
                }
            }
        }
    }
    cells
}

#[test]
fn a_second_role_never_widens_the_one_a_token_acts_as() {
    let cells = multi_role_cells();
    let count = |status| cells.iter().filter(|c| c.expected == status).count();
    assert!(
        count(200) > 0 && count(403) > 0 && count(404) > 0,
        "{cells:?}"
    );
    // mallory, a customer who also takes payments, confirms somebody else's delivery.
    assert_eq!(
        expected_for(
            EventType::Confirmed,
            &[Role::Customer, Role::PaymentService],
            None,
            "mallory"
        ),
        404
    );
    // The order's partner, also an operator, sent as operator: operators do not pick up.
    assert_eq!(
        expected_for(
            EventType::PickedUp,
            &[Role::Partner, Role::Operator],
            Some(Role::Operator),
            "sim"
        ),
        403
    );
    // A customer who is also an operator cancels anyone's order as the operator.
    assert_eq!(
        expected_for(
            EventType::Cancel,
            &[Role::Customer, Role::Operator],
            None,
            "mallory"
        ),
        200
    );
}

/// Tokens with two roles, through `/events` and `/event-batches`: every refusal cell is sent
/// (against one order per state, which none of them may change), and one cell of each kind
/// that applies gets an order of its own, per route.
#[tokio::test]
async fn tokens_with_two_roles_act_only_as_the_role_they_send_under() {
    let stack = Stack::start_with(StackOptions::quiet().with_gateway()).await;
    let api = stack.api();
    let cells = multi_role_cells();
    let shared = shared_orders(
        api,
        cells.iter().filter(|c| c.expected != 200).map(|c| c.from),
    )
    .await;
    // Refusals: every cell, one event at a time. Applications, and batches (each starts a
    // batch workflow): one cell per key.
    let mut sends: Vec<(&MultiCell, bool)> = Vec::new();
    let mut keys_sent = BTreeSet::new();
    for cell in &cells {
        let first_of_kind = keys_sent.insert(format!("{:?}", cell.key()));
        if cell.expected != 200 || first_of_kind {
            sends.push((cell, false));
        }
        if first_of_kind && cell.may_batch() {
            sends.push((cell, true));
        }
    }
    let results: Vec<_> = futures::stream::iter(sends.into_iter().map(|(cell, batch)| {
        let shared = &shared;
        async move {
            let (id, before) = order_for(api, shared, cell.from, cell.expected == 200).await;
            let token = api.token(cell.sub, &cell.roles);
            let answer = if batch {
                let mut event = cell.body();
                event["delivery_order_id"] = json!(id);
                api.post("/api/v1/event-batches", &token, &json!({"events": [event]}))
                    .await
            } else {
                api.post(
                    &format!("/api/v1/delivery-orders/{id}/events"),
                    &token,
                    &cell.body(),
                )
                .await
            };
            (cell, batch, id, before, answer)
        }
    }))
    .buffer_unordered(6)
    .collect()
    .await;

    let mut wrong = Vec::new();
    for (cell, batch, id, before, answer) in &results {
        let route = if *batch { "batch" } else { "events" };
        if answer.status != cell.expected {
            wrong.push(format!(
                "{route} {:?} by {} {:?} sent as {:?} ({}): expected {}, got {} {}",
                cell.event,
                cell.sub,
                cell.roles,
                cell.sent_as,
                cell.from,
                cell.expected,
                answer.status,
                answer.text
            ));
        } else if cell.expected != 200 {
            answer.problem(cell.expected);
        } else if !*batch {
            assert!(
                answer.json["version"].as_u64().unwrap() > *before,
                "{}",
                answer.text
            );
        } else {
            assert_eq!(
                answer.json["results"][0]["delivery_order_id"],
                id.as_str(),
                "{}",
                answer.text
            );
            assert!(
                answer.json["results"][0]["version"].as_u64().unwrap() > *before,
                "{}",
                answer.text
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cells wrong:\n{}",
        wrong.len(),
        results.len(),
        wrong.join("\n")
    );

    unchanged(api, &shared).await;
}
