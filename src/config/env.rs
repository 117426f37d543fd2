//! The file merged with the `RECORDHUB__SECTION__KEY` environment variables (the
//! `config` crate), and errors that name the variable behind a bad value.

use super::positions::SourceFile;
use super::{ConfigError, RawConfig, ENV_PREFIX, ENV_SEPARATOR};

fn env_source() -> config::Environment {
    config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("ack.processing_ids")
        .with_list_parse_key("auth.algorithms")
}

pub(super) fn merge(file: Option<&SourceFile>) -> Result<RawConfig, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from_str(&file.text, config::FileFormat::Toml));
    }
    // The file alone deserialized in `check`, so failures from here on are the environment's.
    let merged = builder.add_source(env_source()).build().map_err(env_error)?;
    merged.try_deserialize().map_err(env_error)
}

/// Names the variable behind a `config` crate error when the error carries its key.
fn env_error(e: config::ConfigError) -> ConfigError {
    let (key, message) = match &e {
        config::ConfigError::Type { key: Some(key), unexpected, expected, .. } => {
            (Some(key.clone()), format!("invalid type: {unexpected}, expected {expected}"))
        }
        config::ConfigError::At { key, error, .. } => (key.clone(), error.to_string()),
        other => (None, other.to_string()),
    };
    // serde reports an unknown key against its parent table; name the key's own variable.
    let key = match (key, unknown_field(&message)) {
        (Some(parent), Some(field)) => Some(format!("{parent}.{field}")),
        (None, Some(field)) => Some(field.to_string()),
        (key, None) => key,
    };
    let var = match key {
        Some(key) => env_var_name(&key),
        None => format!("{ENV_PREFIX}{ENV_SEPARATOR}*"),
    };
    ConfigError::Env { var, message }
}

/// The name in serde's "unknown field `name`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// The variable that sets `section.key`, as spelled in the environment if it is set.
fn env_var_name(key: &str) -> String {
    let expected = format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", key.replace('.', ENV_SEPARATOR));
    env_vars().into_iter().find(|var| var.eq_ignore_ascii_case(&expected)).unwrap_or(expected.to_uppercase())
}

/// Names of the `RECORDHUB__*` variables currently set (matched case-insensitively, like the `config` crate).
pub(super) fn env_vars() -> Vec<String> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.to_lowercase().starts_with(&prefix))
        .collect()
}
