//! The Suivi v2 contract: a validator of documents against La Poste's published OpenAPI
//! description of Suivi v2 (tests/fixtures/laposte-suivi-v2-openapi.json, its source in the README
//! beside it). Used by this crate's tests and, through the `contract` feature, by the end-to-end
//! tests of the live endpoint.

use serde_json::Value;

const OPENAPI: &str = include_str!("../../tests/fixtures/laposte-suivi-v2-openapi.json");

/// One envelope with a shipment (La Poste's 200 item).
pub const SHIPMENT_ITEM: &str =
    "/paths/~1idships~1{idship}/get/responses/200/content/application~1json/schema/items";
/// An envelope without shipment (La Poste's 404: 104, and Rempart's 504).
pub const NOT_FOUND: &str = "/components/responses/response404/content/application~1json/schema";
/// La Poste's 400 answer.
pub const INVALID: &str = "/components/responses/response400/content/application~1json/schema";
/// What every envelope has.
pub const BASE: &str = "/components/schemas/baseResponse";

/// A small validator for the subset of OpenAPI 3.0 schemas La Poste's description uses: `$ref`,
/// `allOf`, `type` (object, array, string, number, integer, boolean), `format: date-time`, `enum`,
/// `properties`, `required`, `items`. Strict where OpenAPI is lenient: a field the schema does
/// not declare is an error, so nothing Rempart adds goes unnoticed.
pub struct Contract {
    spec: Value,
}

impl Contract {
    /// The validator over La Poste's description.
    #[must_use]
    pub fn new() -> Self {
        Contract {
            spec: serde_json::from_str(OPENAPI).expect("the fixture is JSON"),
        }
    }

    /// A node of La Poste's description (panics when absent: the pointers are constants).
    #[must_use]
    pub fn pointer(&self, pointer: &str) -> &Value {
        self.spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the fixture"))
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => self.resolve(self.pointer(r.trim_start_matches('#'))),
            None => schema,
        }
    }

    /// The schemas a node stands for once `allOf` is flattened.
    fn flatten<'a>(&'a self, schema: &'a Value, out: &mut Vec<&'a Value>) {
        let schema = self.resolve(schema);
        out.push(schema);
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.flatten(part, out);
        }
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let mut parts = Vec::new();
        self.flatten(schema, &mut parts);
        for part in &parts {
            self.check_scalar(part, value, path, errors);
        }
        if let Some(object) = value.as_object() {
            self.check_object(&parts, object, path, errors);
        }
        if let Some(items) = value.as_array() {
            for part in &parts {
                if let Some(item_schema) = part.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}[{i}]"), errors);
                    }
                }
            }
        }
    }

    fn check_scalar(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if let Some(ty) = schema.get("type").and_then(Value::as_str) {
            let ok = match ty {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "boolean" => value.is_boolean(),
                other => panic!("type {other} is not handled"),
            };
            if !ok {
                errors.push(format!("{path}: {value} is not of type {ty}"));
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time") {
            let text = value.as_str().unwrap_or_default();
            // La Poste's format: aaaa-mm-jjThh:mn:ss+hh:mn, an explicit offset.
            let shaped =
                text.len() == 25 && (text.as_bytes()[19] == b'+' || text.as_bytes()[19] == b'-');
            if rempart_domain::Timestamp::parse_rfc3339(text).is_none() || !shaped {
                errors.push(format!("{path}: {text:?} is not aaaa-mm-jjThh:mn:ss+hh:mn"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| same_value(a, value))
        {
            errors.push(format!(
                "{path}: {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }

    fn check_object(
        &self,
        parts: &[&Value],
        object: &serde_json::Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let declared = |name: &str| {
            parts
                .iter()
                .filter_map(|p| p.get("properties").and_then(|ps| ps.get(name)))
                .collect::<Vec<_>>()
        };
        for (name, field) in object {
            let schemas = declared(name);
            if schemas.is_empty() {
                errors.push(format!("{path}.{name}: not declared by the schema"));
            }
            for s in schemas {
                self.check(s, field, &format!("{path}.{name}"), errors);
            }
        }
        for part in parts {
            for name in part
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                // A required field the schema never defines (event.order) has no type to meet;
                // La Poste's own answers do not carry it (docs/suivi-v2.md).
                if !object.contains_key(name) && !declared(name).is_empty() {
                    errors.push(format!("{path}.{name}: required but missing"));
                }
            }
        }
    }

    /// Every way `value` departs from the schema at `schema_pointer` (empty: it conforms).
    #[must_use]
    pub fn errors(&self, schema_pointer: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(self.pointer(schema_pointer), value, "$", &mut errors);
        errors
    }
}

/// JSON equality where `4` and `4.0` are the same number (OpenAPI `number` enums).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Default for Contract {
    fn default() -> Self {
        Self::new()
    }
}
