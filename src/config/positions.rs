//! The config file as text: reading it, and where each key is (`file:line:col`)
//! so that every error can point at the line to fix.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{ConfigError, RawConfig};

const DEFAULT_FILE: &str = "engine.toml";

/// The config file's path as the user should see it, and its text.
pub(super) struct SourceFile {
    pub(super) path: PathBuf,
    pub(super) text: String,
}

/// Reads the explicit file, or `./engine.toml` when it exists.
pub(super) fn read_file(path: Option<&Path>) -> Result<Option<SourceFile>, ConfigError> {
    let (path, required) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_FILE), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(SourceFile { path, text })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::NotFound { path }),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

impl SourceFile {
    /// Deserializes the file alone, which keeps positions the merged load loses, and
    /// returns where each key is, for validation messages.
    pub(super) fn check(&self) -> Result<Positions, ConfigError> {
        let parsed = toml::from_str::<RawConfig>(&self.text);
        let keys = key_spans(&self.text);
        let positions = Positions { path: self.path.clone(), text: self.text.clone(), keys };
        match parsed {
            Ok(_) => Ok(positions),
            Err(e) => Err(positions.file_error(&e)),
        }
    }
}

/// Where each `section.key` of the file is.
#[derive(Default)]
pub(super) struct Positions {
    path: PathBuf,
    text: String,
    keys: Vec<KeySpan>,
}

struct KeySpan {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// Spans of top-level keys and of keys one table down; empty if the text is not TOML.
fn key_spans(text: &str) -> Vec<KeySpan> {
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    for (section, value) in root.get_ref() {
        if let Some(table) = value.get_ref().as_table() {
            for (key, inner) in table {
                let path = format!("{}.{}", section.get_ref(), key.get_ref());
                spans.push(KeySpan { path, key: key.span(), value: inner.span() });
            }
        }
        let path = section.get_ref().to_string();
        spans.push(KeySpan { path, key: section.span(), value: value.span() });
    }
    spans
}

impl Positions {
    fn file_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map_or(0, |span| span.start);
        let (line, col) = line_col(&self.text, offset);
        // Nested keys come before their section in `keys`, so the first hit is the innermost.
        let key =
            self.keys.iter().find(|k| k.key.contains(&offset) || k.value.contains(&offset)).map(|k| k.path.clone());
        let message = e.message().to_string();
        ConfigError::File { file: self.path.clone(), line, col, key, message }
    }

    /// `file:line:col` of `section.key`, if the file sets it.
    pub(super) fn locate(&self, key: &str) -> Option<String> {
        let span = self.keys.iter().find(|k| k.path == key)?;
        let (line, col) = line_col(&self.text, span.key.start);
        Some(format!("{}:{line}:{col}", self.path.display()))
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        assert_eq!(line_col("a = 1\nbé = 2\n", 0), (1, 1));
        assert_eq!(line_col("a = 1\nbé = 2\n", 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col("a = 1\nbé = 2\n", 9), (2, 3));
    }
}
