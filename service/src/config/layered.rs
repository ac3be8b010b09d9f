//! Layered settings: the TOML file, then `IDLINK_SECTION__KEY` environment variables over it
//! (defaults come from the schema). Unknown keys are an error, in either layer.

use super::{ConfigError, Settings};
use serde::Deserialize;

const SECTIONS: &[&str] = &["listen", "store", "auth", "kinds", "flows", "server", "telemetry", "limits", "credit", "events", "dev"];

impl Settings {
    /// Reads the TOML file (if any), then applies `IDLINK_SECTION__KEY` variables from `env`.
    pub fn load(path: Option<&std::path::Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("IDLINK_") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // Other IDLINK_* variables (a test's, a tool's) are not settings.
            if !SECTIONS.contains(&path[0].as_str()) {
                continue;
            }
            // A secret is text whatever it looks like: a password `1234` is not a number.
            let value = match path.last() {
                Some(key) if key.ends_with("secret") || key.ends_with("password") => toml::Value::String(value),
                _ => parse_env_value(&value),
            };
            set_path(&mut table, &path, value)?;
        }
        Self::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), ConfigError> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(ConfigError::Invalid(format!("{first} is not a section"))),
            }
        }
    }
}
