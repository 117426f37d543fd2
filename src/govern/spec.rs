//! The exclusion rule file format as an information-governance lead writes it
//! (TOML, read with serde), keeping byte spans so [`super::compile`] can say
//! `file:line:col`. Nothing is interpreted here; unknown keys are errors.

use serde::Deserialize;
use toml::Spanned;

/// One rule file (`mappings/governance/*.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
    /// Which fields name a visit and an order (at most one file may say).
    pub cascade: Option<Spanned<CascadeSpec>>,
}

/// `[[rule]]`: when it holds, and what it excludes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique across the directory; logs, metrics and `check` name it.
    pub id: Spanned<String>,
    /// `sexual_health`, `hiv`, `fertility`, `gender_reassignment`,
    /// `domestic_violence`, `criminal_record`, `restricted` … (free text).
    pub category: Spanned<String>,
    /// Why the rule exists (for the reviewer; not used).
    pub description: Option<String>,
    /// MSH-3.1 values (the rule holds only for these senders).
    pub sending_app: Option<Spanned<Vec<String>>>,
    /// MSH-4.1 values.
    pub sending_facility: Option<Spanned<Vec<String>>>,
    /// A mapping path (`DG1-3.1`, `PV1-10`, `OBX-3.1`): every occurrence is tested.
    pub field: Option<Spanned<String>>,
    /// Exact values (compared without dots, case-insensitively).
    #[serde(rename = "in")]
    pub in_values: Option<Vec<String>>,
    /// Value prefixes: `"B20"` holds for B20, B20.1, B201.
    pub prefix: Option<Vec<String>>,
    /// A code list file in `codes/`: exact values.
    pub in_list: Option<Spanned<String>>,
    /// A code list file in `codes/`: prefixes.
    pub prefix_list: Option<Spanned<String>>,
    /// `"message"` or `"item"`.
    pub exclude: Option<Spanned<String>>,
    /// Item fields (mapping names) removed instead of excluding.
    pub drop_fields: Option<Spanned<Vec<String>>>,
}

/// `[cascade]`: the paths whose values name a visit and an order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeSpec {
    #[serde(default)]
    pub visit: Vec<Spanned<String>>,
    #[serde(default)]
    pub order: Vec<Spanned<String>>,
}

/// `codes/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeListSpec {
    /// The code system (`ICD-10`, `SNOMED CT`, `LOINC`, `NHS treatment function` …).
    pub system: String,
    /// Where the list comes from (a reference set, a URL, a document).
    pub source: String,
    pub codes: Vec<String>,
}
