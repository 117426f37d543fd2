//! `[retention]` and `[dedup]`: how long the journal and the dedup window
//! keep what they hold. Raw form, validated form and validation in one
//! file, so these keys stay apart from the others' sections.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{resolve_path, Validator};

/// `[retention]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRetention {
    /// Days to keep journal segments. A segment whose newest entry is older, and
    /// whose entries are all applied to the index, is removed (or moved to
    /// `archive_dir`). 0 (the default) keeps everything. A `reindex` rebuilds only
    /// what the journal still holds.
    pub journal_days: u64,
    /// Where retired segments go instead of being removed; relative to the config
    /// file's directory. Not set: removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_dir: Option<PathBuf>,
    /// Seconds between retention checks (journal segments and the dedup window);
    /// one check also runs at start-up.
    pub check_interval_secs: u64,
}

/// `[dedup]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDedup {
    /// Seconds a message's (MSH-3, MSH-4, MSH-10) is remembered, to answer a
    /// retransmission with the original ACK; after that it is processed as new.
    /// 0: no time bound.
    pub window_secs: u64,
    /// Most messages remembered; beyond it the oldest are forgotten. 0: no size bound.
    pub max_entries: u64,
}

impl Default for RawRetention {
    fn default() -> Self {
        Self { journal_days: 0, archive_dir: None, check_interval_secs: 3600 }
    }
}

impl Default for RawDedup {
    fn default() -> Self {
        Self { window_secs: 7 * 86_400, max_entries: 10_000_000 }
    }
}

/// Validated `[retention]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// `None`: keep every segment.
    pub journal: Option<Duration>,
    /// Resolved path.
    pub archive_dir: Option<PathBuf>,
    pub check_interval: Duration,
}

/// Validated `[dedup]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupConfig {
    /// `None`: no time bound.
    pub window: Option<Duration>,
    /// 0: no size bound.
    pub max_entries: usize,
}

impl RetentionConfig {
    /// The journal policy, when retention is on.
    pub fn policy(&self) -> Option<crate::journal::retention::Policy> {
        let retain = self.journal?;
        Some(crate::journal::retention::Policy {
            retain_ms: u64::try_from(retain.as_millis()).unwrap_or(u64::MAX),
            archive_dir: self.archive_dir.clone(),
        })
    }
}

pub(super) fn validate_retention(raw: RawRetention, v: &mut Validator<'_>) -> RetentionConfig {
    const MAX_DAYS: u64 = 100 * 366;
    if raw.journal_days > MAX_DAYS {
        v.report(
            "retention.journal_days",
            raw.journal_days.to_string(),
            "at most 36600 (100 years); 0 keeps everything",
        );
    }
    if raw.check_interval_secs == 0 {
        v.report("retention.check_interval_secs", "0".into(), "must be a positive number");
    }
    let archive_dir = raw.archive_dir.map(|dir| {
        if dir.as_os_str().is_empty() {
            v.report("retention.archive_dir", "\"\"".into(), "must name a directory (or leave it out to remove)");
        }
        resolve_path(&dir, v.origins.base_for("retention.archive_dir"))
    });
    RetentionConfig {
        journal: (raw.journal_days > 0).then(|| Duration::from_secs(raw.journal_days.min(MAX_DAYS) * 86_400)),
        archive_dir,
        check_interval: Duration::from_secs(raw.check_interval_secs.max(1)),
    }
}

pub(super) fn validate_dedup(raw: RawDedup, v: &mut Validator<'_>) -> DedupConfig {
    let max_entries = usize::try_from(raw.max_entries).unwrap_or_else(|_| {
        v.report("dedup.max_entries", raw.max_entries.to_string(), "too large for this platform");
        usize::MAX
    });
    DedupConfig { window: (raw.window_secs > 0).then(|| Duration::from_secs(raw.window_secs)), max_entries }
}

#[cfg(test)]
mod tests {
    use super::super::{load, Overrides};

    fn load_text(text: &str) -> Result<super::super::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.toml");
        std::fs::write(&file, text).unwrap();
        load(Some(&file), &Overrides::default())
            .map(|mut c| {
                // Relative to the file's directory, which the test checks before it goes.
                if let Some(a) = &c.retention.archive_dir {
                    assert!(a.starts_with(dir.path()), "{}", a.display());
                    c.retention.archive_dir = Some("checked".into());
                }
                c
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn retention_and_dedup_keys_load_and_default_to_keep_everything_and_a_week() {
        let c = load_text("").unwrap();
        assert_eq!(c.retention.journal, None, "retention is off by default");
        assert!(c.retention.policy().is_none());
        assert_eq!(c.dedup.window, Some(std::time::Duration::from_secs(604_800)));
        let c = load_text(
            "[retention]\njournal_days = 30\narchive_dir = \"arch\"\n[dedup]\nwindow_secs = 0\nmax_entries = 5\n",
        )
        .unwrap();
        let p = c.retention.policy().unwrap();
        assert_eq!(p.retain_ms, 30 * 86_400_000);
        assert_eq!(p.archive_dir, Some("checked".into()));
        assert_eq!((c.dedup.window, c.dedup.max_entries), (None, 5));
    }

    #[test]
    fn a_bad_retention_key_names_its_line() {
        let e = load_text("[retention]\njournal_dayz = 30\n").unwrap_err();
        assert!(e.contains("engine.toml:2:") && e.contains("journal_dayz"), "{e}");
        let e = load_text("[retention]\ncheck_interval_secs = 0\n").unwrap_err();
        assert!(e.contains("engine.toml:2:") && e.contains("retention.check_interval_secs"), "{e}");
    }
}
