//! Bearer tokens: HS256 JWTs with `sub`, `roles` and `exp`. Roles decide what a caller may do;
//! a customer only ever sees its own delivery orders.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use delivery_workflows::ActorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem_openapi::SecurityScheme;
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;
use crate::state::AppState;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    roles: Vec<Role>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
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

    /// True when the caller sees only its own deliveries (a customer and nothing more).
    pub fn is_customer_only(&self) -> bool {
        self.roles.iter().all(|r| *r == Role::Customer)
    }

    /// Whether this caller may see a delivery order of `customer_id`. Others get 404, so a
    /// customer cannot even learn that an id exists.
    pub fn may_see(&self, customer_id: &str) -> bool {
        !self.is_customer_only() || self.sub == customer_id
    }
}

/// Signs and verifies tokens with one HS256 key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("sub must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")]
    BadSubject,
    #[error("a token needs at least one role")]
    NoRoles,
    #[error("signing the token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn mint(&self, sub: &str, roles: &[Role], ttl: Duration) -> Result<String, TokenError> {
        if !valid_subject(sub) {
            return Err(TokenError::BadSubject);
        }
        if roles.is_empty() {
            return Err(TokenError::NoRoles);
        }
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The caller of a valid token, or what is wrong with it (safe to show the client).
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the token's signature is not valid".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "the token must be signed with HS256".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    "the token's claims must be sub, roles (customer, partner, operator, payment_service, order_management, admin) and exp".to_owned()
                }
                _ => "the token is not a valid JWT".to_owned(),
            },
        )?;
        let claims = data.claims;
        if !valid_subject(&claims.sub) {
            return Err("the token's sub is not a valid subject".into());
        }
        if claims.roles.is_empty() {
            return Err("the token carries no roles".into());
        }
        Ok(Caller {
            sub: claims.sub,
            roles: claims.roles,
        })
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
            .data::<Arc<AppState>>()
            .expect("the app state is attached to every route")
            .tokens
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

    #[test]
    fn a_customer_sees_only_its_own() {
        let customer = Caller {
            sub: "c-1".into(),
            roles: vec![Role::Customer],
        };
        assert!(customer.may_see("c-1"));
        assert!(!customer.may_see("c-2"));
        let operator = Caller {
            sub: "op".into(),
            roles: vec![Role::Operator],
        };
        assert!(operator.may_see("c-2"));
    }
}
