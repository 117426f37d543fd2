//! Code lists (`codes/NAME.txt` or `codes/NAME.toml`): a list an IG lead can
//! paste from a national reference set, each naming its code system and source.
//!
//! A `.txt` list has one code a line; `#` starts a comment; two header
//! comments are required, `# system: …` and `# source: …`. A `.toml` list has
//! `system`, `source` and `codes = [...]`.

use std::collections::BTreeMap;
use std::path::Path;

use super::LoadError;
use crate::mapping::compile::line_col;
use crate::mapping::LoadErrorKind;

/// One loaded list: normalised codes (see [`normalise`]).
#[derive(Debug, Clone, Default)]
pub struct CodeList {
    pub system: String,
    pub source: String,
    pub codes: Vec<String>,
}

/// Codes compare without dots, spaces and case: ICD-10 `B20.1` is sent as
/// `B201` by some systems, `Z65.1` as `z651`.
pub fn normalise(code: &str) -> String {
    let mut out = String::new();
    normalise_into(code, &mut out);
    out
}

/// [`normalise`] into `out` (cleared first): the govern stage reuses one
/// buffer for every value of a message.
pub fn normalise_into(code: &str, out: &mut String) {
    out.clear();
    let keep = |c: &char| *c != '.' && !c.is_whitespace();
    if code.is_ascii() {
        out.extend(code.chars().filter(keep).map(|c| c.to_ascii_uppercase()));
    } else {
        out.extend(code.chars().filter(keep).flat_map(char::to_uppercase));
    }
}

/// Every list in `dir` by file stem; a missing `dir` is no lists.
pub fn load(dir: &Path, errors: &mut Vec<LoadError>) -> BTreeMap<String, CodeList> {
    let mut lists = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return lists };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    for file in files {
        let ext = file.extension().and_then(|x| x.to_str()).unwrap_or_default().to_string();
        if ext != "txt" && ext != "toml" {
            continue;
        }
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let err = |line, col, kind| LoadError { file: file.clone(), line, col, kind };
        let src = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                errors.push(err(0, 0, LoadErrorKind::Io(e.to_string())));
                continue;
            }
        };
        let list = if ext == "toml" {
            match toml::from_str::<super::spec::CodeListSpec>(&src) {
                Ok(s) => CodeList {
                    system: s.system,
                    source: s.source,
                    codes: s.codes.iter().map(|c| normalise(c)).collect(),
                },
                Err(e) => {
                    let (line, col) = line_col(&src, e.span().map_or(0, |s| s.start));
                    errors.push(err(line, col, LoadErrorKind::Toml(e.message().trim().to_string())));
                    continue;
                }
            }
        } else {
            parse_txt(&src)
        };
        if list.system.is_empty() || list.source.is_empty() {
            let what =
                "a code list must name its code system and its source: add `# system: …` and `# source: …` lines";
            errors.push(err(1, 1, LoadErrorKind::Invalid(what.into())));
            continue;
        }
        if lists.contains_key(&name) {
            let what = format!("two code lists are called '{name}' (.txt and .toml): keep one");
            errors.push(err(1, 1, LoadErrorKind::Invalid(what)));
            continue;
        }
        lists.insert(name, list);
    }
    lists
}

fn parse_txt(src: &str) -> CodeList {
    let mut list = CodeList::default();
    for line in src.lines() {
        let (code, comment) = line.split_once('#').unwrap_or((line, ""));
        let comment = comment.trim();
        for (key, slot) in [("system:", &mut list.system), ("source:", &mut list.source)] {
            if let Some(v) = comment.strip_prefix(key) {
                if slot.is_empty() {
                    *slot = v.trim().to_string();
                }
            }
        }
        let code = normalise(code);
        if !code.is_empty() {
            list.codes.push(code);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalise_the_same_with_or_without_non_ascii_letters() {
        assert_eq!(normalise(" z65.1\t"), "Z651");
        assert_eq!(normalise("b\u{a0}20.7"), "B207", "a no-break space is whitespace too");
        assert_eq!(normalise("stra\u{df}e.1"), "STRASSE1", "non-ASCII letters upper-case as Unicode says");
        let mut buf = String::from("left over");
        normalise_into("f64.0", &mut buf);
        assert_eq!(buf, "F640", "the buffer is cleared first");
    }

    #[test]
    fn a_text_list_reads_codes_comments_and_its_header() {
        let l = parse_txt("# system: ICD-10\n# source: WHO\nB20   # HIV disease\n\nz21\nZ65.1\n");
        assert_eq!((l.system.as_str(), l.source.as_str()), ("ICD-10", "WHO"));
        assert_eq!(l.codes, ["B20", "Z21", "Z651"]);
    }

    #[test]
    fn a_list_without_its_source_is_refused_with_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.txt"), "# system: ICD-10\nB20\n").unwrap();
        let mut errors = Vec::new();
        assert!(load(dir.path(), &mut errors).is_empty());
        let text = errors[0].to_string();
        assert!(text.ends_with("x.txt:1:1: a code list must name its code system and its source: add `# system: …` and `# source: …` lines"), "{text}");
    }
}
