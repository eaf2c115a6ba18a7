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
        (name = "rollouts", description = "Rollouts of many aliases in batches"),
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

/// The schemas of request fields whose rules the derives cannot state: patterns built from
/// [`crate::bounds`], item patterns of lists, and fields that only some `kind`s allow. Each is
/// exactly what the handler checks, so that every request the spec calls valid is accepted
/// (or answered 404/409 for a name that does not exist or a state that refuses it).
pub mod fields {
    use serde_json::{Value, json};
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use crate::bounds;

    /// A service name, as [`crate::model::ServiceName`] takes it.
    pub const SERVICE: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

    /// Text without control characters but tab (what [`bounds::reason`] refuses).
    const PRINTABLE: &str = "^[^\\u0000-\\u0008\\u000A-\\u001F\\u007F-\\u009F]*$";

    /// `IP:PORT` with an address that can be an endpoint (not unspecified, not multicast) and a
    /// port from 1: IPv4 with a first octet of 1 to 223, `[::1]`, or an IPv6 address written out
    /// in full (eight groups). The server also takes other spellings of IPv6 and 0.x.y.z.
    const ENDPOINT: &str = "^((22[0-3]|2[01][0-9]|1[0-9]{2}|[1-9][0-9]?)(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|\\[::1\\]|\\[[1-9a-e][0-9a-f]{0,3}(:[0-9a-f]{1,4}){7}\\]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

    fn schema(value: Value) -> RefOr<Schema> {
        serde_json::from_value(value).expect("a schema written in api::spec::fields")
    }

    /// `value`, or `null` (an optional field may be sent as `null`, which means unset).
    fn or_null(mut value: Value) -> Value {
        if let Some(kind) = value.get("type").cloned() {
            value["type"] = json!([kind, "null"]);
        }
        value
    }

    fn services() -> Value {
        json!({
            "type": "array",
            "items": {"type": "string", "pattern": SERVICE},
            "minItems": 1,
            "maxItems": bounds::MAX_TARGETS,
            "uniqueItems": true,
            "description": "Service names (lower-case DNS labels), 1 to 64, each once",
            "example": ["web-v1"],
        })
    }

    /// `targets` of a relink.
    pub fn targets() -> RefOr<Schema> {
        schema(services())
    }

    /// `targets` of an alias definition: optional.
    pub fn optional_targets() -> RefOr<Schema> {
        schema(or_null(services()))
    }

    /// `to` of a promotion: one service name, or a list.
    pub fn promote_to() -> RefOr<Schema> {
        schema(json!({
            "oneOf": [{"type": "string", "pattern": SERVICE}, services()],
            "description": "The service (or up to 64 services, each once) to promote to",
            "example": "web-v2",
        }))
    }

    fn duration(range: bounds::DurationRange, what: &str, example: &str) -> Value {
        or_null(json!({
            "type": "string",
            "pattern": range.pattern(),
            "description": format!(
                "{what}: a whole number and a unit (ms, s, m, h, d) that stays within the bounds; \
                 the server also reads other humantime spellings (`1h 30m`) within them"
            ),
            "example": example,
        }))
    }

    /// `steps` of a promotion: a list of steps, their CLI form, or a preset's name.
    pub fn steps() -> RefOr<Schema> {
        let presets: Vec<&str> = crate::steps::PRESETS.iter().map(|(n, _)| *n).collect();
        let described: Vec<String> = crate::steps::PRESETS
            .iter()
            .map(|(n, what)| format!("`{n}`: {what}"))
            .collect();
        schema(json!({
            "oneOf": [
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": crate::steps::MAX_STEPS,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["weight"],
                        "properties": {
                            "weight": {"type": "integer", "minimum": 1, "maximum": 100},
                            "hold": {"type": "string", "pattern": "^([1-9][0-9]{0,4})(s|m|h)$"},
                            "pause": {"type": "boolean"},
                        },
                    },
                },
                {"type": "string", "enum": presets},
                {"type": "string", "pattern": "^[0-9]{1,3}%(:[0-9a-z]+)?(,[0-9]{1,3}%(:[0-9a-z]+)?)*$"},
            ],
            "description": format!(
                "Weighted steps, weights increasing and the last 100, each holding (1s to 24h) \
                 or pausing for a confirm or neither: a list (`[{{\"weight\": 10, \"hold\": \
                 \"1m\"}}, {{\"weight\": 50, \"pause\": true}}, {{\"weight\": 100}}]`), the \
                 CLI form (`10%:1m,50%:pause,100%`), or a preset: {}. Not with `confirm: true` \
                 (a `pause` step waits for a confirm); `observe` does not apply to steps",
                described.join("; ")
            ),
            "example": [{"weight": 10, "hold": "1m"}, {"weight": 50, "pause": true}, {"weight": 100}],
        }))
    }

    pub fn observe() -> RefOr<Schema> {
        schema(duration(
            bounds::OBSERVE,
            "How long both versions answer before the old one drains, 0s to 7days",
            "30s",
        ))
    }

    pub fn warm_timeout() -> RefOr<Schema> {
        schema(duration(
            bounds::WARM_TIMEOUT,
            "How long the new version has to become healthy, 100ms to 1day",
            "2m",
        ))
    }

    /// `reason`: at most [`bounds::MAX_REASON`] characters, no control characters but tab.
    pub fn reason() -> RefOr<Schema> {
        schema(or_null(json!({
            "type": "string",
            "maxLength": bounds::MAX_REASON,
            "pattern": PRINTABLE,
            "description": "Why, for the history: at most 1024 characters, no control characters but tab",
        })))
    }

    /// `endpoints` of an API service.
    pub fn endpoints() -> RefOr<Schema> {
        schema(json!({
            "type": "array",
            "items": {"type": "string", "pattern": ENDPOINT},
            "maxItems": bounds::MAX_ENDPOINTS,
            "uniqueItems": true,
            "description": "`IP:PORT` or `[IPv6]:PORT`, each once, at most 10,000",
            "example": ["10.0.0.5:8080"],
        }))
    }

    /// `port_name` of an alias (see [`crate::model::check_port_name`]).
    pub fn port_name() -> RefOr<Schema> {
        schema(or_null(json!({
            "type": "string",
            "pattern": "^[a-z0-9-]{1,62}$",
            "description": "The SRV service label (`http` gives `_http._tcp.<alias>`): 1 to 62 lower-case letters, digits and dashes",
            "example": "http",
        })))
    }

    /// `if_none_healthy` of an alias.
    pub fn if_none_healthy() -> RefOr<Schema> {
        schema(json!({
            "type": ["string", "null"],
            "enum": ["last-known-good", "all", "none", null],
            "description": "What the alias answers when none of its endpoints is healthy",
        }))
    }

    /// `health` of an API service: settings over the config's `[health]`. `path`, `expect` and
    /// `host` apply to `kind` http only (the config's `[health]` is the kind when it is unset).
    /// The timeout must not exceed the interval (the one given, else the config's): a rule
    /// between two fields that JSON Schema cannot state.
    pub fn health() -> RefOr<Schema> {
        let common = |kind: Value, http: bool| {
            let text = |max: usize, pattern: &str| {
                if http {
                    json!({"type": ["string", "null"], "minLength": 1, "maxLength": max, "pattern": pattern})
                } else {
                    json!({"type": "null"})
                }
            };
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "kind": kind,
                    "path": text(crate::check::MAX_TEXT, "^/[^\\u0000-\\u001F\\u007F-\\u009F]*$"),
                    "expect": text(7, "^([1-5][0-9]{2}|100-199|200-299|300-399|400-499|500-599|[1-4][0-9]{2}-5[0-9]{2}|[1-3][0-9]{2}-4[0-9]{2}|[12][0-9]{2}-3[0-9]{2}|1[0-9]{2}-2[0-9]{2})$"),
                    "host": text(crate::check::MAX_TEXT, "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"),
                    "interval": duration(bounds::HEALTH_INTERVAL, "How often to check, 50ms to 1h", "2s"),
                    "timeout": duration(bounds::HEALTH_TIMEOUT, "A check slower than this fails, 10ms to the interval", "1s"),
                    "rise": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
                    "fall": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
                },
            })
        };
        let mut not_http = common(json!({"type": "string", "enum": ["tcp", "none"]}), false);
        not_http["required"] = json!(["kind"]);
        schema(json!({
            "oneOf": [
                common(json!({"type": ["string", "null"], "enum": ["http", null]}), true),
                not_http,
                {"type": "null"},
            ],
            "description": "Health settings over `[health]`: kind, path, expect, host, interval, timeout, rise, fall. path, expect and host apply to kind http only; the timeout must not exceed the interval (the one given, else `[health]`'s)",
        }))
    }
}
