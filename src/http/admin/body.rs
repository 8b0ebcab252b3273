//! Typed reads of a JSON request body that collect every problem (path + message) so one 400
//! `Validation error` lists them all. Unknown keys are ignored (docs/operations.md, "Admin API and
//! tokens").

use serde_json::{Map, Value};

use super::ApiError;

pub struct Body {
    map: Map<String, Value>,
    details: Vec<(String, String)>,
}

impl Body {
    /// An empty body counts as `{}`.
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body {
                map: Map::new(),
                details: Vec::new(),
            });
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body {
                map,
                details: Vec::new(),
            }),
            Ok(_) => Err(ApiError::Validation(vec![(
                "".into(),
                "the body must be a JSON object".into(),
            )])),
            Err(e) => Err(ApiError::Status(400, format!("Invalid JSON body: {e}"))),
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    pub fn is_null(&self, field: &str) -> bool {
        matches!(self.map.get(field), Some(Value::Null))
    }

    pub fn raw(&self, field: &str) -> Option<&Value> {
        self.map.get(field)
    }

    pub fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.details.push((field.to_owned(), message.into()));
    }

    /// A string of 1..=max characters. Absent/null → None (a problem when `required`).
    pub fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.problem(field, "is required");
                }
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.problem(field, "must not be empty");
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                self.problem(field, format!("must be at most {max} characters"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(field, "must be a string");
                None
            }
        }
    }

    /// A positive whole number that fits a PostgreSQL integer.
    pub fn positive_int(&mut self, field: &str) -> Option<i32> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 && n <= i64::from(i32::MAX) => Some(n as i32),
                _ => {
                    self.problem(
                        field,
                        format!("must be a whole number from 1 to {}", i32::MAX),
                    );
                    None
                }
            },
        }
    }

    pub fn string_list(&mut self, field: &str) -> Option<Vec<String>> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(_) => {
                self.problem(field, "must be an array of strings");
                None
            }
        }
    }

    pub fn object(&mut self, field: &str) -> Option<Map<String, Value>> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => {
                self.problem(field, "must be an object");
                None
            }
        }
    }

    /// One of `choices`.
    pub fn choice(&mut self, field: &str, choices: &[&str]) -> Option<String> {
        let v = self.string(field, false, 100)?;
        if choices.contains(&v.as_str()) {
            Some(v)
        } else {
            self.problem(field, format!("must be one of {}", choices.join(", ")));
            None
        }
    }

    /// Ok when no problem was found, else the 400 with every detail.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.details.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.details))
        }
    }
}
