//! The OpenAPI 3.1 document of the control API. Its paths come from the `#[utoipa::path]`
//! attributes on the handlers, registered by the same `routes!` calls that build the router,
//! and its schemas from the DTOs themselves, so the spec cannot name a route the server lacks
//! or miss one it has. Served at `GET /v1/openapi.json`.

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "aliasd control API",
        description = "Aliases, their versioned services, and health-gated promotions. Reads are open; changes need `Authorization: Bearer <token>` (a token from `[[api.token]]`). Errors are JSON `{\"error\": ...}` naming the field and its bounds.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerToken),
    tags(
        (name = "aliases", description = "Aliases and relinks"),
        (name = "operations", description = "Promotions, confirm, abort, rollback"),
        (name = "services", description = "Versioned services and their endpoints"),
        (name = "meta", description = "Health, reload, events, metrics, this spec"),
        (name = "ui", description = "The web dashboard and its assets")
    )
)]
pub struct ApiDoc;

/// The `token` security scheme: a bearer token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
