//! Config loading end to end: the shipped `engine.toml`, the bad files pinned in
//! `fixtures/config/`, and the precedence defaults < file < environment < command line.
//!
//! The environment and the working directory are process-wide and tests run in
//! parallel threads, so every test that loads a config holds `LOCK`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use recordhub::config::{self, Config, ConfigError, LogFormat, Overrides, RawConfig};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the environment is restored by `EnvGuard` anyway.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn fixture(name: &str) -> PathBuf {
    path(&format!("fixtures/config/{name}"))
}

fn load(file: &Path) -> Result<Config, ConfigError> {
    config::load(Some(file), &Overrides::default())
}

/// The error text for a file that must fail to load.
fn load_err(file: &Path) -> String {
    match load(file) {
        Ok(config) => panic!("{} loaded but should fail: {config:?}", file.display()),
        Err(e) => e.to_string(),
    }
}

/// Sets environment variables and removes them on drop, also when the test panics.
struct EnvGuard(Vec<&'static str>);

impl EnvGuard {
    fn set(&mut self, name: &'static str, value: &str) {
        std::env::set_var(name, value);
        self.0.push(name);
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            std::env::remove_var(name);
        }
    }
}

#[test]
fn shipped_engine_toml_loads_and_equals_defaults() {
    let _lock = lock();
    let loaded = load(&path("engine.toml")).expect("shipped engine.toml loads");
    assert_eq!(loaded, Config::default());
}

#[test]
fn shipped_engine_toml_lists_every_key_with_its_default() {
    // Guards against a key added to RawConfig but not documented in engine.toml.
    let text = std::fs::read_to_string(path("engine.toml")).unwrap();
    let shipped: toml::Table = toml::from_str(&text).unwrap();
    let defaults = toml::Table::try_from(RawConfig::default()).unwrap();
    assert_eq!(shipped, defaults);
}

#[test]
fn defaults_have_the_documented_types_and_values() {
    let config = Config::default();
    assert_eq!(config.mllp.listen, "127.0.0.1:2575".parse::<SocketAddr>().unwrap());
    assert_eq!(config.mllp.max_frame_bytes, 16_777_216);
    assert_eq!(config.mllp.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.mllp.frame_timeout, Duration::from_secs(30));
    assert_eq!(config.mllp.ack_timeout, Duration::from_secs(30));
    assert_eq!(config.store.data_dir, PathBuf::from("./data"));
    assert_eq!(config.ack.processing_ids, ["P", "D", "T"]);
    assert_eq!(config.hl7.fallback_charset, "windows-1252");
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn no_path_and_no_engine_toml_means_defaults() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let loaded = config::load(None, &Overrides::default());
    std::env::set_current_dir(before).unwrap();
    assert_eq!(loaded.unwrap(), Config::default());
}

#[test]
fn no_path_reads_engine_toml_in_the_working_directory() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("engine.toml"), "[store]\nmax_batch = 7\n").unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let loaded = config::load(None, &Overrides::default());
    std::env::set_current_dir(before).unwrap();
    assert_eq!(loaded.unwrap().store.max_batch, 7);
}

#[test]
fn misspelt_key_names_file_position_key_and_valid_keys() {
    let _lock = lock();
    let file = fixture("misspelt-key.toml");
    assert_eq!(
        load_err(&file),
        format!(
            "{}:3:1: mllp.max_frame_byte: unknown field `max_frame_byte`, expected one of \
             `listen`, `max_frame_bytes`, `idle_timeout_secs`, `frame_timeout_secs`, \
             `max_connections`, `max_in_flight`, `ack_timeout_secs`",
            file.display()
        )
    );
}

#[test]
fn wrong_type_names_file_position_and_key() {
    let _lock = lock();
    let file = fixture("wrong-type.toml");
    assert_eq!(
        load_err(&file),
        format!("{}:3:13: store.max_batch: invalid type: string \"64\", expected u64", file.display())
    );
}

#[test]
fn toml_syntax_error_has_a_position() {
    let _lock = lock();
    let file = fixture("syntax-error.toml");
    let message = load_err(&file);
    assert!(message.starts_with(&format!("{}:2:", file.display())), "{message}");
}

#[test]
fn bad_address_names_file_position_key_and_value() {
    let _lock = lock();
    let file = fixture("bad-address.toml");
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n\
             {}:2:1: mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575",
            file.display()
        )
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let _lock = lock();
    let file = fixture("several-errors.toml");
    let f = file.display();
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n\
             {f}:2:1: mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575\n\
             {f}:3:1: mllp.max_in_flight = 0: must be a positive number\n\
             {f}:6:1: store.max_batch = 0: must be a positive number\n\
             {f}:9:1: hl7.fallback_charset = \"latin-9\": unknown charset; expected one of ascii, utf-8, iso-8859-1, windows-1252\n\
             {f}:12:1: log.format = \"xml\": unknown log format; expected json or pretty"
        )
    );
}

#[test]
fn explicit_missing_file_is_an_error_naming_it() {
    let _lock = lock();
    let file = fixture("does-not-exist.toml");
    let err = load(&file).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("fixtures/config/does-not-exist.toml"), "{err}");
}

#[test]
fn charset_is_case_insensitive_and_stored_lower_case() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, "[hl7]\nfallback_charset = \"ISO-8859-1\"\n").unwrap();
    assert_eq!(load(&file).unwrap().hl7.fallback_charset, "iso-8859-1");
}

/// All environment cases in one test: the variables are process-wide.
#[test]
fn precedence_defaults_file_environment_command_line() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, "[mllp]\nlisten = \"127.0.0.1:2000\"\nmax_in_flight = 8\n[store]\nmax_batch = 100\n")
        .unwrap();
    let mut env = EnvGuard(Vec::new());

    // File over defaults.
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:2000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.max_batch, 100);
    assert_eq!(loaded.mllp.max_connections, 1024);

    // Environment over file; lists split on ','.
    env.set("RECORDHUB__MLLP__LISTEN", "127.0.0.1:3000");
    env.set("RECORDHUB__STORE__MAX_BATCH", "64");
    env.set("RECORDHUB__ACK__PROCESSING_IDS", "P,T");
    env.set("RECORDHUB__LOG__FORMAT", "pretty");
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:3000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.max_batch, 64);
    assert_eq!(loaded.mllp.max_in_flight, 8, "file value kept where env is silent");
    assert_eq!(loaded.ack.processing_ids, ["P", "T"]);
    assert_eq!(loaded.log.format, LogFormat::Pretty);

    // Command line over environment.
    let overrides = Overrides {
        listen: Some("127.0.0.1:4000".parse().unwrap()),
        data_dir: Some(PathBuf::from("/srv/recordhub")),
        http_listen: Some("127.0.0.1:9000".parse().unwrap()),
    };
    let loaded = config::load(Some(&file), &overrides).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:4000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.http.listen, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.data_dir, PathBuf::from("/srv/recordhub"));
    assert_eq!(loaded.store.max_batch, 64);

    // A bad value from the environment names the variable, not the file.
    env.set("RECORDHUB__MLLP__LISTEN", "localhost:abc");
    assert_eq!(
        load(&file).unwrap_err().to_string(),
        "invalid configuration:\nenvironment variable RECORDHUB__MLLP__LISTEN: \
         mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575"
    );
    env.set("RECORDHUB__MLLP__LISTEN", "127.0.0.1:3000");

    // A wrong type from the environment names the variable.
    env.set("RECORDHUB__STORE__MAX_BATCH", "lots");
    let message = load(&file).unwrap_err().to_string();
    assert!(message.starts_with("environment variable RECORDHUB__STORE__MAX_BATCH: "), "{message}");
    env.set("RECORDHUB__STORE__MAX_BATCH", "64");

    // A misspelt variable is an unknown key, not silently ignored.
    env.set("RECORDHUB__MLLP__LISTN", "127.0.0.1:3000");
    assert_eq!(
        load(&file).unwrap_err().to_string(),
        "environment variable RECORDHUB__MLLP__LISTN: unknown field `listn`, expected one of \
         `listen`, `max_frame_bytes`, `idle_timeout_secs`, `frame_timeout_secs`, \
         `max_connections`, `max_in_flight`, `ack_timeout_secs`"
    );
}
