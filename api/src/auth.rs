//! Bearer tokens: HS256 JWTs with `sub`, `roles` and `exp`, and the standard `iat`, `nbf`, `iss`,
//! `aud` and `jti` when the issuer adds them. Roles decide what a caller may do; a customer only
//! ever sees its own delivery orders. The gateway checks `nbf` and `exp` (with a few seconds of
//! leeway for clocks), `iss` and `aud` when configured, and refuses tokens that live longer than
//! its maximum lifetime, so a leaked token cannot be valid for a year.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use delivery_workflows::ActorKind;
use delivery_workflows::activities::ProjectedOrder;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem_openapi::SecurityScheme;
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// Roles a token may carry (the `roles` claim).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    poem_openapi::Enum,
)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Partner,
    Operator,
    PaymentService,
    OrderManagement,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Customer,
        Role::Partner,
        Role::Operator,
        Role::PaymentService,
        Role::OrderManagement,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        self.actor_kind().as_str()
    }

    /// The actor an event sent under this role is recorded as.
    pub fn actor_kind(self) -> ActorKind {
        match self {
            Role::Customer => ActorKind::Customer,
            Role::Partner => ActorKind::Partner,
            Role::Operator => ActorKind::Operator,
            Role::PaymentService => ActorKind::PaymentService,
            Role::OrderManagement => ActorKind::OrderManagement,
            Role::Admin => ActorKind::Admin,
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Registered claims are accepted; any other claim is refused, so a typo in `roles` cannot pass
/// as a token without roles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    roles: Vec<Role>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// One audience or several; checked by the JWT library against `JWT_AUDIENCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// Seconds a token's `exp`, `nbf` and `iat` may be off because the issuer's clock is.
const LEEWAY_SECONDS: u64 = 5;

/// What the gateway requires of a token beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `JWT_ISSUER`: when set, tokens must carry this `iss` (and minted ones do).
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, tokens must name this audience in `aud` (and minted ones do).
    pub audience: Option<String>,
    /// `JWT_MAX_TTL_SECS`: the longest lifetime accepted, from `iat` (or now) to `exp`.
    pub max_ttl: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Refuses the request unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs one of the roles: {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// Whether this caller may read a delivery order of these parties. Staff and the services
    /// that run the business (operator, admin, order management, payment service) read every
    /// order; a customer reads its own, a partner those whose pickup it took. A token with
    /// several roles reads what any of them may, never more because it holds one more role.
    /// Others get 404, so nobody can even learn that an id exists.
    pub fn may_see(&self, parties: Parties<'_>) -> bool {
        self.has_any(&SEE_EVERY_ORDER)
            || (self.has(Role::Customer) && parties.customer_id == self.sub)
            || (self.has(Role::Partner) && parties.partner_id == Some(self.sub.as_str()))
    }
}

/// The roles that read every delivery order.
const SEE_EVERY_ORDER: [Role; 4] = [
    Role::Operator,
    Role::Admin,
    Role::OrderManagement,
    Role::PaymentService,
];

/// Whom a delivery order concerns, as far as reading it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties<'a> {
    pub customer_id: &'a str,
    /// The partner that took the pickup, once one did.
    pub partner_id: Option<&'a str>,
}

impl<'a> From<&'a ProjectedOrder> for Parties<'a> {
    fn from(order: &'a ProjectedOrder) -> Self {
        Self {
            customer_id: &order.customer_id,
            partner_id: order.partner_id.as_deref(),
        }
    }
}

/// Signs and verifies tokens with one HS256 key under one policy.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    policy: TokenPolicy,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("sub must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")]
    BadSubject,
    #[error("a token needs at least one role")]
    NoRoles,
    #[error("a token may live at most {0} s (JWT_MAX_TTL_SECS)")]
    TooLong(u64),
    #[error("signing the token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl TokenKeys {
    /// Keys under the default policy (no issuer or audience, 24 h at most).
    pub fn new(secret: &[u8]) -> Self {
        Self::with_policy(secret, TokenPolicy::default())
    }

    pub fn with_policy(secret: &[u8], policy: TokenPolicy) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        if let Some(issuer) = &policy.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        // Without a configured audience a token's `aud` names nothing this gateway answers to:
        // it is accepted as information, not checked.
        validation.validate_aud = policy.audience.is_some();
        if let Some(audience) = &policy.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            policy,
            validation,
        }
    }

    pub fn mint(&self, sub: &str, roles: &[Role], ttl: Duration) -> Result<String, TokenError> {
        if !valid_subject(sub) {
            return Err(TokenError::BadSubject);
        }
        if roles.is_empty() {
            return Err(TokenError::NoRoles);
        }
        if ttl > self.policy.max_ttl {
            return Err(TokenError::TooLong(self.policy.max_ttl.as_secs()));
        }
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            nbf: None,
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone().map(serde_json::Value::String),
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The caller of a valid token, or what is wrong with it (safe to show the client).
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        self.verify_until(token).map(|(caller, _)| caller)
    }

    /// The caller of a valid token and when the token expires (`exp`, Unix seconds): a live
    /// socket is closed then.
    pub fn verify_until(&self, token: &str) -> Result<(Caller, u64), String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    "the token is not valid yet (nbf)".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    "the token's issuer (iss) is not the one this gateway trusts".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "the token's audience (aud) does not name this gateway".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token lacks the {claim} claim")
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the token's signature is not valid".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "the token must be signed with HS256".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    "the token's claims must be sub, roles (customer, partner, operator, payment_service, order_management, admin) and exp, with optional iat, nbf, iss, aud and jti".to_owned()
                }
                _ => "the token is not a valid JWT".to_owned(),
            },
        )?;
        let claims = data.claims;
        let now = unix_now();
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECONDS) {
            return Err("the token was issued in the future (iat)".into());
        }
        let lifetime = claims
            .exp
            .saturating_sub(claims.iat.unwrap_or(now).min(now));
        if lifetime > self.policy.max_ttl.as_secs() + LEEWAY_SECONDS {
            return Err(format!(
                "the token lives {lifetime} s; this gateway accepts at most {} s",
                self.policy.max_ttl.as_secs()
            ));
        }
        if !valid_subject(&claims.sub) {
            return Err("the token's sub is not a valid subject".into());
        }
        if claims.roles.is_empty() {
            return Err("the token carries no roles".into());
        }
        Ok((
            Caller {
                sub: claims.sub,
                roles: claims.roles,
            },
            claims.exp,
        ))
    }
}

/// Subjects have the format of customer ids, so a customer's `sub` can match its orders.
fn valid_subject(sub: &str) -> bool {
    delivery_workflows::validation::check_ref_id("sub", sub).is_ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `Authorization: Bearer <JWT>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Caller);

async fn check_bearer(
    req: &poem::Request,
    bearer: poem_openapi::auth::Bearer,
) -> poem::Result<Caller> {
    let checked = req
        .extensions()
        .get::<CheckedToken>()
        .filter(|c| c.token == bearer.token)
        .map(|c| c.caller.clone());
    let caller = match checked {
        Some(caller) => caller,
        None => req
            .data::<Arc<TokenKeys>>()
            .expect("the token keys are attached to every route")
            .verify(&bearer.token),
    };
    caller.map_err(|why| ApiError::unauthorized(why).into())
}

/// A request's bearer token, verified once: the rate limiter needs the caller before routing,
/// and the handlers reuse the verdict.
#[derive(Clone)]
pub struct CheckedToken {
    token: String,
    caller: Result<Caller, String>,
}

/// Verifies the request's bearer token, if any, and keeps the verdict on the request.
pub fn check_request(keys: &TokenKeys, req: &mut poem::Request) -> Option<Caller> {
    let token = req
        .header("authorization")?
        .strip_prefix("Bearer ")?
        .trim()
        .to_owned();
    let caller = keys.verify(&token);
    req.extensions_mut().insert(CheckedToken {
        token,
        caller: caller.clone(),
    });
    caller.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_fail_clearly() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let token = keys
            .mint("alice", &[Role::Operator], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            keys.verify(&token).unwrap(),
            Caller {
                sub: "alice".into(),
                roles: vec![Role::Operator]
            }
        );
        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        assert!(other.verify(&token).unwrap_err().contains("signature"));
        assert!(keys.verify("not.a.jwt").is_err());
        assert!(
            keys.mint("", &[Role::Admin], Duration::from_secs(1))
                .is_err()
        );
        assert!(keys.mint("bob", &[], Duration::from_secs(1)).is_err());
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A token with exactly `claims`, as another issuer could make it.
    fn raw(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn standard_claims_are_accepted_and_nbf_is_honoured() {
        let keys = TokenKeys::new(SECRET);
        let now = unix_now();
        let full = raw(serde_json::json!({
            "sub": "alice", "roles": ["operator"], "exp": now + 60, "iat": now,
            "nbf": now, "iss": "https://id.example", "aud": ["delivery", "other"], "jti": "t-1",
        }));
        assert_eq!(keys.verify(&full).unwrap().sub, "alice");
        let early = raw(serde_json::json!({
            "sub": "alice", "roles": ["operator"], "exp": now + 600, "nbf": now + 120,
        }));
        assert!(keys.verify(&early).unwrap_err().contains("not valid yet"));
        let within_leeway = raw(serde_json::json!({
            "sub": "alice", "roles": ["operator"], "exp": now + 600, "nbf": now + 2,
        }));
        assert!(keys.verify(&within_leeway).is_ok());
        let unknown = raw(serde_json::json!({
            "sub": "alice", "roles": ["operator"], "exp": now + 60, "role": "admin",
        }));
        assert!(
            keys.verify(&unknown)
                .unwrap_err()
                .contains("claims must be")
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let keys = TokenKeys::with_policy(
            SECRET,
            TokenPolicy {
                issuer: Some("https://id.example".into()),
                audience: Some("delivery".into()),
                ..TokenPolicy::default()
            },
        );
        let now = unix_now();
        let token = |extra: serde_json::Value| {
            let mut claims =
                serde_json::json!({"sub": "alice", "roles": ["operator"], "exp": now + 60});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            raw(claims)
        };
        let good = token(serde_json::json!({"iss": "https://id.example", "aud": "delivery"}));
        assert!(keys.verify(&good).is_ok());
        let minted = keys
            .mint("bob", &[Role::Customer], Duration::from_secs(60))
            .unwrap();
        assert!(
            keys.verify(&minted).is_ok(),
            "minted tokens carry iss and aud"
        );
        for (extra, why) in [
            (
                serde_json::json!({"iss": "https://evil.example", "aud": "delivery"}),
                "issuer",
            ),
            (
                serde_json::json!({"iss": "https://id.example", "aud": "billing"}),
                "audience",
            ),
            (serde_json::json!({"aud": "delivery"}), "iss claim"),
            (
                serde_json::json!({"iss": "https://id.example"}),
                "aud claim",
            ),
        ] {
            let err = keys.verify(&token(extra.clone())).unwrap_err();
            assert!(err.contains(why), "{extra}: {err}");
        }
    }

    #[test]
    fn tokens_living_longer_than_the_maximum_are_refused() {
        let keys = TokenKeys::with_policy(
            SECRET,
            TokenPolicy {
                max_ttl: Duration::from_secs(3600),
                ..TokenPolicy::default()
            },
        );
        let now = unix_now();
        let year =
            raw(serde_json::json!({"sub": "a", "roles": ["admin"], "exp": now + 365 * 86400}));
        assert!(keys.verify(&year).unwrap_err().contains("at most 3600 s"));
        // An old iat does not help: the lifetime counts from it.
        let backdated = raw(serde_json::json!({
            "sub": "a", "roles": ["admin"], "iat": now - 7200, "exp": now + 60,
        }));
        assert!(
            keys.verify(&backdated)
                .unwrap_err()
                .contains("at most 3600 s")
        );
        let future_iat = raw(serde_json::json!({
            "sub": "a", "roles": ["admin"], "iat": now + 3000, "exp": now + 3600,
        }));
        assert!(
            keys.verify(&future_iat)
                .unwrap_err()
                .contains("issued in the future")
        );
        assert!(matches!(
            keys.mint("a", &[Role::Admin], Duration::from_secs(7200)),
            Err(TokenError::TooLong(3600))
        ));
    }

    #[test]
    fn each_role_reads_only_the_orders_it_may() {
        let caller = |sub: &str, roles: &[Role]| Caller {
            sub: sub.into(),
            roles: roles.to_vec(),
        };
        let carried = |customer_id, partner_id| Parties {
            customer_id,
            partner_id,
        };
        let (own, others) = (carried("c-1", Some("sim")), carried("c-2", Some("rival")));
        let unbound = carried("c-2", None);

        let customer = caller("c-1", &[Role::Customer]);
        assert!(customer.may_see(own));
        assert!(!customer.may_see(others));

        let partner = caller("sim", &[Role::Partner]);
        assert!(partner.may_see(own));
        assert!(!partner.may_see(others));
        assert!(!partner.may_see(unbound));
        // A partner named like a customer is still no customer.
        assert!(!caller("c-2", &[Role::Partner]).may_see(unbound));

        // Roles add up, and no role widens another: a customer that is also a partner reads its
        // own orders and the ones it carries, nobody else's.
        let both = caller("sim", &[Role::Customer, Role::Partner]);
        assert!(both.may_see(own));
        assert!(both.may_see(carried("sim", None)));
        assert!(!both.may_see(others));

        for role in [
            Role::Operator,
            Role::Admin,
            Role::OrderManagement,
            Role::PaymentService,
        ] {
            assert!(caller("staff", &[role]).may_see(others), "{role:?}");
            assert!(caller("staff", &[role]).may_see(unbound), "{role:?}");
        }
    }
}
